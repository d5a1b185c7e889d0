"""The Gradio web app: chat + 10 movie cards with 👍/👎/undo, re-ranked live after every click.

``build_services(settings)`` loads everything once (catalog, SASRec, sentence encoder and its embedding
cache, the preference LLM if it loads, the database); ``build_app(services, settings)`` builds the page;
``main()`` launches it (``RECSYS_MODE=demo``: the kiosk page for talks, see webapp/demo.py). If the LLM or its adapters are missing, the app serves the retriever's order and
says so on the page. Run: ``.venv/bin/python app.py`` (or ``make run``).
Not for: ranking, dialogue or storage logic (recsys/, dialogue/, storage/, webapp/).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from recsys.catalog import Catalog
from recsys.protocols import PreferenceRanker
from recsys.sasrec import SASRecRetriever
from recsys.text import SentenceEncoder
from settings import Settings
from storage.db import init_db, make_engine, make_sessionmaker
from study.config import load_studies
from study.flow import StudyEnv
from webapp.demo import KIOSK_CSS, build_demo_app
from webapp.privacy_ui import render_privacy_tab, setup_privacy_events
from webapp.services import LOADING, UNAVAILABLE, Services, attach_ranker, attach_text, services_from_parts
from webapp.study_ui import (
    STUDY_CSS,
    STUDY_TAB,
    participant_browser_state,
    render_study_tab,
    setup_study_events,
)
from webapp.ui import render_page, setup_events

log = logging.getLogger("app")

CSS_FILE = Path(__file__).parent / "assets" / "app.css"


def file_digest(path: Path, n: int = 8) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:n] if path.exists() else "missing"


def adapter_scope(folder: Path) -> str | None:
    """The "adapter_scope" an adapter's metadata.json records (None without one)."""
    try:
        return json.loads((folder / "metadata.json").read_text()).get("adapter_scope")
    except (OSError, ValueError):
        return None


def load_ranker(settings: Settings, catalog: Catalog) -> tuple[PreferenceRanker | None, dict[str, str], str]:
    """(ranker, adapter versions, status): status is "" when loaded, else the notice for the page."""
    if not settings.use_llm:
        return None, {}, "Preference models switched off (RECSYS_USE_LLM=false) — showing retriever order."
    if settings.vllm_url:  # the scale path: a vLLM server serves the base model with both adapters
        from recsys.vllm_backend import VLLMConfig, VLLMRanker

        key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
        if any(adapter_scope(settings.adapters_dir / n) == "answer" for n in ("pos", "neg")):
            log.warning("the adapters in %s act at the answer position only; a vLLM server applies them to "
                        "every token, so its scores will not match them (recsys/vllm_backend.py)",
                        settings.adapters_dir)
        ranker = VLLMRanker(catalog, VLLMConfig(base_url=settings.vllm_url, api_key=key))
        return ranker, {"base": settings.base_model, "pos": "vllm:pos", "neg": "vllm:neg"}, ""
    adapters_dir = settings.adapters_dir
    try:
        import torch

        from recsys.llm import RankerConfig, resolve_device
        from recsys.llm import load_ranker as load_letter_ranker  # local: torch/transformers only when used

        on_cpu = resolve_device(settings.device) == "cpu"
        dtype = getattr(torch, settings.cpu_dtype) if on_cpu and settings.cpu_dtype != "auto" else None
        if settings.compile or settings.compile_attention:  # inductor's kernels beside the other caches: reused later
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(settings.cache_dir).resolve() / "inductor"))
        config = RankerConfig(compile=settings.compile, compile_attention=settings.compile_attention)
        ranker = load_letter_ranker(settings.base_model, settings.cache_dir, adapters_dir, catalog, config,
                                    device=settings.device, dtype=dtype)
    except Exception as exc:  # noqa: BLE001 - any failure here must leave a working retriever-only app
        log.warning("preference models unavailable: %s", exc)
        return None, {}, f"{UNAVAILABLE} ({type(exc).__name__}: {str(exc)[:160]})"
    versions = {"base": settings.base_model}
    for name in ("pos", "neg"):
        meta = getattr(ranker, "metadata", {}).get(name, {})
        weights = adapters_dir / name / "adapter_model.safetensors"
        versions[name] = f"{meta.get('template_version', '?')}@{file_digest(weights)}"
    return ranker, versions, ""


def build_services(settings: Settings, background: bool = False) -> Services:
    """Load every model and open the database, once per process.

    With ``background`` the page can serve as soon as the catalog, SASRec and the database are ready
    (a few seconds); the sentence encoder and the preference LLM load in a thread and join when ready,
    and until then the page says so and lists keep the retriever's order.
    """
    folder = settings.retriever_dir
    catalog = Catalog.from_csv(folder / "catalog.csv")
    retriever = SASRecRetriever.load(folder)
    engine = make_engine(settings.database_url)
    init_db(engine)
    popular = [int(retriever.item_ids[i]) for i in retriever.popularity[:300]]
    services = services_from_parts(
        settings, catalog, retriever, make_sessionmaker(engine), popular=popular, llm_status=LOADING,
        model_version=f"sasrec/{folder.name}@{file_digest(folder / 'model.pt')}",
    )
    if background:
        threading.Thread(target=load_models, args=(services, settings), name="load-models", daemon=True).start()
    else:
        load_models(services, settings)
    return services


def load_models(services: Services, settings: Settings) -> None:
    """The slow part of start-up: the sentence encoder (free text, title matching) and the LLM ranker."""
    started = time.perf_counter()
    try:
        attach_text(services, SentenceEncoder(settings.embedding_model), settings)
    except Exception:  # noqa: BLE001 - without it the app still ranks with SASRec and fuzzy titles
        log.exception("sentence encoder unavailable; free-text requests use SASRec and filters only")
    attach_ranker(services, *load_ranker(settings, services.catalog))
    log.info("language models ready in %.1f s: %s", time.perf_counter() - started,
             services.llm_status or "preference models loaded")


def browser_secret(settings: Settings) -> str:
    """The key that encrypts the person's id in their browser; kept in the cache folder so that a
    restarted app can still read it (gradio makes a new one per start otherwise)."""
    if settings.browser_secret is not None:
        return settings.browser_secret.get_secret_value()
    path = settings.cache_dir / "browser_state_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def build_app(services: Services, settings: Settings, secret: str | None = None) -> gr.Blocks:
    """The page: Movies (chat + cards), Study (participants and researchers), My data (see, delete).
    In demo mode (settings.mode) the kiosk page instead (webapp/demo.py)."""
    secret = secret or browser_secret(settings)
    if settings.mode == "demo":
        return build_demo_app(services, settings, secret)
    env = StudyEnv(services, settings, load_studies(settings.studies_dir))
    with gr.Blocks(title="Movie night — a recommender that learns from 👍 and 👎") as demo:
        participant = participant_browser_state(secret)
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Movies", id="movies"):
                page = render_page(services, settings, secret)
            with gr.Tab("Study", id=STUDY_TAB):
                study = render_study_tab(participant)
            with gr.Tab("My data", id="my-data"):
                privacy = render_privacy_tab()
        setup_events(demo, services, settings, page)
        setup_study_events(demo, env, study, tabs)
        setup_privacy_events(demo, services, settings, page, privacy, study)
    return demo


def launch_options(settings: Settings) -> dict[str, Any]:
    """Gradio 6 takes css and theme at launch()."""
    css = CSS_FILE.read_text() if CSS_FILE.exists() else ""
    css += KIOSK_CSS if settings.mode == "demo" else STUDY_CSS
    return {
        "server_name": settings.host,
        "server_port": settings.port,
        "css": css,
        "theme": gr.themes.Soft(),
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    started = time.perf_counter()
    services = build_services(settings, background=True)
    blocks = build_app(services, settings).queue(default_concurrency_limit=8)
    log.info("%s page ready in %.1f s", settings.mode, time.perf_counter() - started)
    blocks.launch(**launch_options(settings))


if __name__ == "__main__":
    main()
