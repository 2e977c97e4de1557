# kvmboot: see README.md. `make demo` boots the built-in test kernel,
# `make test` runs every test (what CI runs).
GO      ?= go
BIN     ?= kvmboot
FUZZTIME ?= 60s

.PHONY: all build demo test test-kvm unit e2e vet lint stubs plugin testkernel kernel check-blobs bench fuzz clean

all: build

# A static binary: kvmboot needs no cgo, and skipping the dynamic loader
# shortens every run's start-up.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/kvmboot

# Installs QEMU first (apt, as root) when no backend can run here.
demo:
	GO=$(GO) scripts/demo.sh

# Everything: unit tests, e2e boots on every backend this host has, fuzz
# seeds. The e2e tests need /dev/kvm, qemu-system-i386 and the Debian
# kernel (make kernel); without them they skip with a reason, and
# KVMBOOT_REQUIRE_{KVM,QEMU,KERNEL}=1 turns those skips into failures.
# testsummary prints what go test prints, then how many tests ran and
# skipped per backend.
SUMMARY = $(GO) run ./e2e/cmd/testsummary --

test: vet
	$(SUMMARY) $(GO) test -json -count=1 -timeout 25m ./...

# Every KVM-backend test against a real KVM: this host's when its KVM runs
# 32-bit paging, else inside the nested KVM lab (e2e/lab: an outer VM under
# QEMU's TCG with SVM, Debian's amd64 kernel and kvm_amd, fetched once by
# scripts/fetch-lab.sh). KVMBOOT_LAB_SET=ci runs CI's selection; the
# summary counts what ran there as make test does.
test-kvm:
	scripts/fetch-lab.sh
	$(SUMMARY) $(GO) run ./e2e/cmd/kvmlab test -json $(LABFLAGS)

# Everything but the e2e boots: needs neither KVM nor QEMU.
unit:
	$(SUMMARY) $(GO) test -json -count=1 $$($(GO) list ./... | grep -v 'kvmboot/e2e$$')

e2e:
	$(GO) test -count=1 -timeout 25m -v ./e2e/...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Beyond vet: staticcheck, and no function outside tests above cyclomatic
# complexity 40 (gocyclo exits 1 and lists them). go run fetches the pinned
# versions through the module proxy; go.mod does not change.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOCYCLO     ?= github.com/fzipp/gocyclo/cmd/gocyclo@v0.6.0

lint:
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(GOCYCLO) -over 40 $$(git ls-files '*.go' | grep -v '_test\.go$$')

# Guest-side blobs and QEMU's plugin are committed; these rebuild them.
stubs:
	scripts/build-stubs.sh

plugin:
	scripts/build-plugin.sh

testkernel:
	scripts/build-testkernel.sh

# CI: the committed blobs (and the plugin) must be what the sources build.
check-blobs: stubs plugin testkernel
	scripts/build-biostest.sh
	scripts/build-conformance-loader.sh
	scripts/build-conformance-pc.sh
	git diff --exit-code -- realmode/firmware.bin realmode/probe.bin realmode/memtest.bin machine/qemu/plugin/kvmboot-tcg.so boot/testkernel/testkernel.elf boot/testkernel/realmode.bin e2e/biostest/ e2e/conformance/

kernel:
	scripts/fetch-kernel.sh

# Go benchmarks (every stage of a boot, over input sizes), then the
# side-by-side boots against plain qemu-system-i386 -kernel (the README's
# figures): the test kernel, Debian's kernel (make kernel) and the floor
# that Linux itself sets, seen from inside QEMU.
bench:
	$(GO) test -run XXX -bench . -benchtime 7x ./internal/... ./realmode/... ./machine/... ./e2e/... ./loader/... ./smoke/...
	scripts/bench-qemu.sh 7
	scripts/bench-linux.sh 7
	scripts/bench-floor.sh 5

fuzz:
	scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -f $(BIN)
