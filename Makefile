# sandpit build. `make` builds the binaries into build/bin; `make test` installs
# what it needs, then runs unit tests (cmocka, ASan+UBSan) and integration tests
# (pytest, real runc/cgroups/tmpfs, as root). See README.md.
include mk/config.mk

.PHONY: all deps run test test-k8s unit integration bench soak lint format format-check rootfs templates images clean fuzz

all: $(BIN)/sandpit-agent $(BIN)/sandpit-init $(BIN)/sandpit $(BIN)/sandpit-operator

include mk/build.mk

deps:
	@mk/deps.sh

# The main job: a sandbox running Python on this machine, no cluster needed.
run: deps
	@$(MAKE) --no-print-directory all
	@mk/run.sh

# The slow integration tests need the `default` and `code-interpreter`
# templates: built once per machine (minutes), then cached; rebuilt when their
# package list or Dockerfile changed.
test: deps
	@mk/tools.sh
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory SANITIZE=1 unit-bins
	@mk/templates.sh code-interpreter
	@tests/run-all.sh

# The cluster tests against a real kube-apiserver and kube-controller-manager
# from $(KUBEBUILDER_ASSETS) (the envtest convention; see tests/README.md), with
# Debian's etcd.
test-k8s:
	$(if $(KUBEBUILDER_ASSETS),,$(error make test-k8s: set KUBEBUILDER_ASSETS to a directory holding kube-apiserver and kube-controller-manager (e.g. setup-envtest use -p path 1.32.x)))
	@mk/deps.sh
	@mk/tools.sh
	@$(MAKE) --no-print-directory all
	@tests/run-all.sh --k8s

unit: deps
	@$(MAKE) --no-print-directory SANITIZE=1 unit-bins
	@tests/run-all.sh --unit-only

integration: deps
	@$(MAKE) --no-print-directory all
	@mk/tools.sh
	@tests/run-all.sh --integration-only

bench: deps
	@$(MAKE) --no-print-directory all
	@mk/tools.sh
	@bench/run.sh

# create/exec/delete cycles with the agent SIGKILLed at random points, then a
# leak check (tests/soak.py; minutes, not part of `make test`).
SOAK_CYCLES ?= 2000
soak: deps
	@$(MAKE) --no-print-directory all
	@tests/soak.py --cycles $(SOAK_CYCLES) $(SOAK_ARGS)

# The `default` template: a Debian rootfs with python3, nodejs and the
# code-interpreter staples, built once per machine outside the repository.
rootfs: deps
	@$(MAKE) --no-print-directory all
	@mk/templates.sh default

templates: all
	@mk/templates.sh host

# The operator, agent and helm-test images (OCI layouts in build/images, tagged with
# VERSION), built by buildah without a daemon or a registry (docs/install.md).
images: deps
	@$(MAKE) --no-print-directory all
	@mk/images.sh all

lint:
	@mk/lint.sh

format:
	@clang-format -i $(ALL_C_SOURCES) $(ALL_HEADERS)

format-check:
	@clang-format --dry-run --Werror $(ALL_C_SOURCES) $(ALL_HEADERS)

clean:
	rm -rf build
