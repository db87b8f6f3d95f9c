# Two commands matter: `make demo` and `make test`. Both create the virtual
# environment on first use and reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench docs clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m sdekit demo

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples docs
	$(VENV)/bin/pyright -p .

# The documentation site (mkdocs-material + mkdocstrings) into site/; --strict: any warning fails,
# including a broken reference, an undocumented public name or a docstring naming a missing object.
docs: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

bench: $(STAMP)
	$(PY) benchmarks/engine.py

# The sampler benchmark's anchors: diffusers (the bench extra) and k-diffusion without its dependencies
# (its full install pulls torchvision and CLIP; benchmarks/samplers.py loads only k_diffusion.sampling).
.PHONY: bench-deps
bench-deps: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(PY) -m pip install --quiet --no-deps k-diffusion==0.1.1.post1 torchdiffeq

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
