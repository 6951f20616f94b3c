# Two commands do all the set-up on a fresh machine:
#   make demo   builds the virtual environment, installs the demo corpus package, and runs the main job
#   make test   builds the virtual environment and runs the test suite
# Everything else here is what those two need.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BASE   ?= models/tiny-sd-clipart
DEMO   ?= data/demo
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test venv openclipart dataset sheets tiny-base clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[train,dev]'
	touch $@

# The real art of the demo: Debian's openclipart-png (public domain), about 8,100 PNGs.
openclipart: /usr/share/openclipart/png

/usr/share/openclipart/png:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openclipart-png

# Main job (until the detector lands): the demo real-versus-mimicry dataset, then contact sheets.
demo: venv openclipart dataset sheets

dataset: venv openclipart
	$(PY) -m training.build_dataset --base $(BASE) --out $(DEMO)

sheets: venv
	$(PY) -m training.sheets --base $(BASE) --dataset $(DEMO) --out docs

# Retrain the bundled tiny base model (about 75 minutes on 2 CPU cores; not needed for the demo).
tiny-base: venv openclipart
	$(PY) -m training.tiny_base --out $(BASE)

test: venv openclipart
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs data/cache $(DEMO)
