# Two commands do all the set-up on a fresh machine:
#   make demo   builds the virtual environment and scans the bundled examples with the bundled model
#   make test   builds the virtual environment and runs the test suite
# The rest reproduces what is bundled: the demo dataset, the detector, the tiny base model.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BASE   ?= models/tiny-sd-clipart
DEMO   ?= data/demo
MODEL  ?= models/default
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test venv sysdeps openclipart dataset detector examples sheets tiny-base bench clean style-encoder heldout evaluate

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[train,serve,scale,postgres,dev]'
	touch $@

# Main job: the bundled detector on the bundled examples (real works and mimicry it never saw).
# `mimicry scan` exits 1 when it flags an image, which is the expected outcome here.
demo: venv
	$(VENV)/bin/mimicry scan examples --model $(MODEL); rc=$$?; [ $$rc -le 1 ]

# The real art of the demo: Debian's openclipart-png (public domain), about 8,100 PNGs.
openclipart: /usr/share/openclipart/png

/usr/share/openclipart/png:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openclipart-png

# What the tests need from Debian: the demo art, Chromium for the web page's browser test, and a
# PostgreSQL server that the registry tests start for themselves.
APT_TEST := openclipart-png chromium chromium-driver postgresql
sysdeps: .sysdeps-installed

.sysdeps-installed: Makefile
	@missing=$$(for p in $(APT_TEST); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi
	touch $@

# The demo real-versus-mimicry dataset: corpus, DreamBooth per artist, mimicry, manifest (~25 min).
dataset: venv openclipart
	$(PY) -m mimicry.training.build_dataset --base $(BASE) --out $(DEMO)

# The 1% false-positive bound of the bundled detector holds on the val human works under these too.
THRESHOLD_UNDER := jpeg95 jpeg75 jpeg50 resize0.5 resize0.25 centre_crop50 blur1 webp purify_lanczos

# The bundled detector, from the demo dataset: fine-tune, then export + calibrate (~10 min).
detector: dataset
	$(PY) -m mimicry.training.finetune --manifest $(DEMO)/manifest.jsonl --out runs/finetune/default --augment robust
	$(PY) -m mimicry.training.export --run runs/finetune/default --out $(MODEL) --name mimicry-demo-clipart --version 0.2.1 \
	    --trained-on "$$(cat docs/TRAINED_ON.txt)" --card-extra docs/input_policy.json docs/eval/robustness.json \
	    --threshold-at gap-top --threshold-under $(THRESHOLD_UNDER)

# Held-out evaluation sets: unseen artists, and the test artist under unseen generator settings
# (LoRA, other sampler/steps/guidance, another DreamBooth seed); about 25 minutes on 2 cores.
heldout: dataset
	$(PY) -m mimicry.training.heldout --dataset $(DEMO) --base $(BASE)

# The evaluation report of the bundled detector: docs/EVALUATION.md with docs/eval/*.png.
evaluate: heldout
	$(PY) -m mimicry.training.evaluate --models $(MODEL) --manifest $(DEMO)/manifest.jsonl \
	    --heldout $(DEMO)/heldout_manifest.jsonl --base $(BASE) --notes docs/eval/notes.md \
	    --report docs/EVALUATION.md --plots docs/eval --json docs/eval/metrics.json

examples: dataset
	$(PY) -m mimicry.training.make_examples --dataset $(DEMO) --out examples

sheets: dataset
	$(PY) -m mimicry.training.sheets --base $(BASE) --dataset $(DEMO) --out docs

# Retrain the bundled tiny base model (about 75 minutes on 2 CPU cores; not needed for the demo).
tiny-base: venv openclipart
	$(PY) -m mimicry.training.tiny_base --out $(BASE)

# The artist registry's style encoder: frozen Lite0 feature statistics, projection and threshold
# from openclipart authors outside the demo set (about 10 minutes); then its attribution report.
style-encoder: venv openclipart
	$(PY) -m mimicry.training.style_encoder --out models/style-encoder
	$(PY) -m mimicry.training.attribution_eval --encoder models/style-encoder --out docs/ATTRIBUTION.md

# The benchmarks of BENCHMARKS.md; the int8/fp16 variants are calibrated on the demo dataset's val split.
bench: venv
	$(PY) bench/scan_benchmark.py --model $(MODEL) --n 300 --memory 10000
	$(PY) -m mimicry.training.quantize --model $(MODEL) --manifest $(DEMO)/manifest.jsonl --out runs/quant
	$(PY) bench/model_benchmark.py --model $(MODEL) --variants runs/quant --manifest $(DEMO)/manifest.jsonl \
	    --profile --json runs/bench_model.json
	$(PY) bench/e2e_benchmark.py --model $(MODEL) --models runs/quant/fp32-static-pad runs/quant/int8-qdq-pc \
	    --json runs/bench_e2e.json

test: venv sysdeps
	$(PY) -m pytest -q

clean:
	rm -rf .sysdeps-installed $(VENV) runs data/cache $(DEMO)
