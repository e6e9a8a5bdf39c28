# The front door. `make` builds build/vigil; `make check` installs what is
# missing, builds a normal and an ASan+UBSan configuration, and runs every
# unit, integration and fuzz test; `make demo` runs a gateway with simulated
# devices streaming.
JOBS ?= 2
BUILD ?= build
ASAN_BUILD ?= build-asan

.PHONY: all deps check unit integration fuzz demo bench clean format

all: $(BUILD)/vigil

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

$(BUILD)/vigil: $(BUILD)/Makefile FORCE
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(ASAN_BUILD) -DVIGIL_SANITIZE=ON >/dev/null

asan: $(ASAN_BUILD)/Makefile FORCE
	cmake --build $(ASAN_BUILD) -j $(JOBS)

deps:
	./scripts/install-deps

check: deps
	$(MAKE) all asan
	./scripts/check

demo: deps
	$(MAKE) all
	./scripts/demo

# Benchmarks (figures, not pass/fail): see bench/README.md.
bench: deps
	$(MAKE) all
	cmake --build $(BUILD) -j $(JOBS) --target bench_audit bench_fill
	./bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz

FORCE:
