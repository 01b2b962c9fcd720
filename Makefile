# `make demo` and `make test` do all set-up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-video demo-judges test install clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,serve,ray]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/visreward demo --output demo_out

demo-video: $(STAMP)
	$(BIN)/visreward demo --video --output demo_video_out

demo-judges: $(STAMP)
	$(BIN)/visreward demo --judges --output demo_judges_out

# Two workers of one thread each: the tiny models' tests are bound by Python, not by the cores (2:58 against 3:53).
test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

# The report test renders HTML in Debian's headless Chromium; install it where apt-get is allowed.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed: the report rendering test will be skipped"

clean:
	rm -rf $(VENV) demo_out demo_video_out demo_judges_out
