# Annotome: `make up` runs the site on embedded defaults, `make test` runs the whole suite.
# Python 3.11 is found by scripts/find_python.sh (python3.11, or python3 when it is 3.11);
# set PYTHON=/path/to/python3.11 to choose.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT

.PHONY: up test lint bench system-deps venv dev-venv clean-venv frontend

# pyproject.toml: the project is installed into the venv too (pip install -e ., console scripts).
$(VENV)/.runtime: requirements.txt pyproject.toml
	@bash scripts/make_venv.sh $(VENV) requirements.txt
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	@bash scripts/make_venv.sh $(VENV) requirements-dev.txt
	@touch $@

venv: $(VENV)/.runtime
dev-venv: $(VENV)/.dev

# TypeScript -> frontend/dist/ (collected as static files); make test also type-checks and unit-tests it.
frontend: $(VENV)/.runtime
	@VENV=$(VENV) bash scripts/build_frontend.sh

up: $(VENV)/.runtime frontend
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py load_demo --if-absent
	$(PY) manage.py build_detections --missing --queue
	$(PY) manage.py ensure_demo_admin
	$(PY) manage.py load_demo_campaign --if-absent
	$(PY) -m webapp.embedded

system-deps:
	@bash scripts/install_system_deps.sh

test: $(VENV)/.dev system-deps
	@bash scripts/run_tests.sh

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.dev system-deps
	$(PY) bench/serve.py

clean-venv:
	rm -rf $(VENV)
