# kvmboot: see README.md. `make demo` boots the built-in test kernel,
# `make test` runs every test (what CI runs).
GO      ?= go
BIN     ?= kvmboot
FUZZTIME ?= 60s

.PHONY: all build demo test test-kvm unit e2e vet stubs testkernel kernel check-blobs bench fuzz clean

all: build

# A static binary: kvmboot needs no cgo, and skipping the dynamic loader
# shortens every run's start-up.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/kvmboot

demo:
	$(GO) run ./cmd/kvmboot run --show-plan --bad-ram 16M-32M

# Everything: unit tests, e2e boots on every backend this host has, fuzz
# seeds. The e2e tests need /dev/kvm, qemu-system-i386 and the Debian
# kernel (make kernel); without them they skip with a reason, and CI
# (KVMBOOT_REQUIRE_*=1) turns those skips into failures.
test: vet
	$(GO) test -count=1 -timeout 25m ./...

# Every KVM-backend test against a real KVM: this host's when its KVM runs
# 32-bit paging, else inside the nested KVM lab (e2e/lab: an outer VM under
# QEMU's TCG with SVM, Debian's amd64 kernel and kvm_amd, fetched once by
# scripts/fetch-lab.sh). KVMBOOT_LAB_SET=ci runs CI's selection;
# LABFLAGS=-json prints go test -json events.
test-kvm:
	scripts/fetch-lab.sh
	$(GO) run ./e2e/cmd/kvmlab test $(LABFLAGS)

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e:
	$(GO) test -count=1 -timeout 25m -v ./e2e/...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Guest-side blobs are committed; these rebuild them.
stubs:
	scripts/build-stubs.sh

testkernel:
	scripts/build-testkernel.sh

# CI: the committed blobs must be what the sources build.
check-blobs: stubs testkernel
	scripts/build-biostest.sh
	git diff --exit-code -- realmode/firmware.bin realmode/probe.bin realmode/memtest.bin boot/testkernel/testkernel.elf boot/testkernel/realmode.bin e2e/biostest/

kernel:
	scripts/fetch-kernel.sh

# Go benchmarks, then the side-by-side boots against QEMU's own -kernel path
# (the README's figures): the test kernel and Debian's kernel (make kernel).
bench:
	$(GO) test -run XXX -bench . -benchtime 7x ./machine/... ./e2e/... ./loader/... ./smoke/...
	scripts/bench-qemu.sh 7
	scripts/bench-linux.sh 5

fuzz:
	scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -f $(BIN)
