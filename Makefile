# Two commands for a newcomer:  `make run` (set up, then start the app)  and  `make test`.
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run demo test lint bench
setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $(STAMP)

run: setup
	$(PY) app.py

# The kiosk page for talks: personas, reset button, its own database; offline (shipped assets only).
demo: setup
	RECSYS_MODE=demo DATABASE_URL=sqlite:///data/demo.db HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) app.py

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) -m recsys.evaluate --seeds 42 43 44
