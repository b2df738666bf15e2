# Two entry points: `make run` (the app) and `make test` (the whole suite).
# Each creates the virtual environment when missing and installs the pinned packages.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench browser-deps data-deps clean-venv

$(STAMP): requirements.txt requirements-test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt -r requirements-test.txt
	$(PY) -m pip install --no-deps torchattacks==3.5.1
	$(PY) -c "import torch, torchvision, torchattacks, streamlit; torchvision.ops.nms"
	touch $(STAMP)

run: $(STAMP) data-deps
	$(PY) -m streamlit run app.py

# The real-browser test needs Debian's chromium and chromium-driver.
browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# Fashion-MNIST offline: Debian's dataset-fashion-mnist installs the official files, which the data
# registry unpacks into $$SIMPLEX_DATA_DIR on first use. Without apt, say what to do and go on.
data-deps:
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null && \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; }; }; } || \
	  echo "note: Fashion-MNIST is not installed: install Debian's dataset-fashion-mnist, or put the four IDX files" \
	       "in \$$SIMPLEX_DATA_DIR/FashionMNIST/raw/ (python -m engine data says where it looks)"

test: $(STAMP) browser-deps data-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_train.py

clean-venv:
	rm -rf $(VENV)
