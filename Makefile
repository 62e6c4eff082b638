# Two commands on a fresh machine: `make demo` and `make test` (both set up the venv first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: setup test demo models bench clean

setup: $(VENV)/.installed

# torch/torchvision are pinned to the releases served from the local wheel cache.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -e ".[dev]"
	# CrowdPose evaluation (xtcocotools): its PyPI wheel is built against numpy 1 and fails to import under numpy 2,
	# so it is built from source against the venv's numpy (with the venv's cython and setuptools: no isolation).
	$(PIP) install cython setuptools
	$(PIP) install --no-build-isolation --no-binary xtcocotools --no-deps xtcocotools
	# The face detector of hrnet predict --face-detector mtcnn (its weights ship inside the package); its
	# metadata pins torch<2.3, which it does not need, so it is installed without dependencies.
	$(PIP) install --no-deps facenet-pytorch
	touch $@

test: setup
	$(PY) -m pytest

demo: setup
	$(VENV)/bin/hrnet demo

models: setup
	$(VENV)/bin/hrnet models

# Inference speed against timm (installs timm, the peer, and openvino + nncf for the OpenVINO rows); see benchmarks/inference.py.
bench: setup
	$(PIP) install -e ".[bench]"
	$(PY) benchmarks/inference.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
