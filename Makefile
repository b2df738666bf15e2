# Two entry points: `make run` (the app) and `make test` (the whole suite).
# Each creates the virtual environment when missing and installs the pinned packages.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench browser-deps clean-venv

$(STAMP): requirements.txt requirements-test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt -r requirements-test.txt
	$(PY) -m pip install --no-deps torchattacks==3.5.1
	$(PY) -c "import torch, torchvision, torchattacks, streamlit; torchvision.ops.nms"
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m streamlit run app.py

# The real-browser test needs Debian's chromium and chromium-driver.
browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

test: $(STAMP) browser-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_train.py

clean-venv:
	rm -rf $(VENV)
