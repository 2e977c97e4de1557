// Package smoke runs boot smoke tests at scale: a YAML matrix of kernels
// and memory scenarios, expanded into cases that boot in parallel, each on
// its own VM through boot.Run (the code path of `kvmboot run`), judged
// against expectations and reported as a summary table, JUnit XML and JSON
// lines. `kvmboot smoke` is its command line.
//
// # The matrix file
//
//	name: nightly                  # suite name in reports (default: the file's base name)
//	defaults:                      # apply to every case unless a kernel, scenario or override says otherwise
//	  timeout: 30s                 # per case (default 60s)
//	  mem: 256M                    # guest RAM (default 256M)
//	  smp: 4                       # processors, 1 to 64 (default 1)
//	  vmm: kvm                     # auto, kvm, qemu, qemu-kernel (default auto); not with a vmms axis
//	  accel: tcg                   # QEMU's accelerator: auto, kvm, tcg
//	  placement: preferred         # preferred, lowest, highest
//	  expectation: {status: 0}     # see below
//	kernels:
//	  - name: testkernel           # names: letters, digits and . _ + - (no spaces, no slashes)
//	    path: ""                   # "" = the built-in test kernel; relative paths resolve against
//	                               # this file's folder; $VAR and ${VAR} expand (unset: an error)
//	    protocol: auto             # auto, multiboot, linux32, linux16
//	    cmdline: "console=ttyS0"
//	    initrd: initrd.gz
//	    modules: ["mod.bin arg1"]  # Multiboot modules, 'FILE[ ARGS]' as --module
//	    no_verify: false           # skip the in-guest checksum (--no-verify)
//	    mem, smp, vmm, accel, timeout, expectation   # as in defaults
//	scenarios:
//	  - name: bad-16M
//	    bad_ram: ["16M-32M", "memmap=32M$64M", "badram=0x08000000,0xff000000"]  # --bad-ram syntaxes
//	    mem: 128M
//	    smp: 2
//	    placement: lowest
//	    load_address: 0x3000000
//	    region: 64M-128M
//	    cmdline: "kt.exit=0"       # appended to the kernel's
//	    bad_ram_policy: stop       # stop (default) or record
//	    vmm, accel, timeout, expectation         # as in defaults
//	vmms: [kvm, {vmm: qemu, accel: tcg}]  # optional third axis: kernel x scenario x vmm
//	exclude:                       # drop cases; kernel, scenario and vmm are globs (path.Match), missing = any
//	  - {kernel: debian, scenario: "kt-*"}
//	include:                       # add back cases that an exclude dropped
//	  - {kernel: debian, scenario: kt-exit}
//	overrides:                     # per-case changes, applied in order after everything else
//	  - {kernel: testkernel, scenario: kt-exit, expectation: {status: 3}, timeout: 5s}
//
// An expectation has status (the exit status of `kvmboot run`, DESIGN.md
// §3), outcome (pass, fail, timeout, crash, error), expect (a regular
// expression used as `kvmboot run --expect`: a console line matching it
// ends the run as a pass) and must_not_touch_bad_ram (default true: any
// recorded bad-RAM access fails the case). A level that sets status or
// outcome replaces both: with only one of them the other is not checked;
// with neither at any level the case must pass with status 0. Levels
// merge in the order defaults, kernel, scenario, overrides.
//
// A kernel or scenario that names vmm pins its cases to that backend: they
// are not crossed with the vmms axis. A kernel and a scenario that pin
// different backends must not meet (exclude the pair).
//
// Decoding is strict: an unknown field, a duplicate key, a bad size, range,
// duration, regular expression or bad-RAM spec, an include, exclude or
// override that matches nothing are errors naming the file and line.
//
// # Cases
//
// A case is named kernel/scenario, or kernel/scenario/vmm with a vmms axis
// (vmm is the axis entry's name: the vmm, "-accel" appended when it sets
// one). Cases are sorted by name; --shard K/N takes every N-th case from
// the K-th, so shards 1..N run each case exactly once and differ in size by
// at most one case.
//
// # Verdicts
//
// A case that met its expectation is pass. A case that did not is one of
// fail (wrong status or outcome), timeout, crash (triple fault, panic or oops,
// checksum mismatch), bad-ram (the guest touched bad RAM) or error (the
// harness could not boot it: bad input, no backend, no room for the kernel).
// With reruns, a case that failed and then passed is flaky: it counts as a
// failure unless flaky cases are allowed, and is never reported as a pass.
package smoke
