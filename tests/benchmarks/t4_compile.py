"""Compile the reference 5.10 kernels for a T4 (compute capability 7.5) with Triton's target API; no GPU needed.

    TRITON_INTERPRET=0 python -m tests.benchmarks.t4_compile 4   # prints one line per launch tile: target, bytes
Run in its own process: under TRITON_INTERPRET=1 (the kata's plugin sets it on a CPU) @triton.jit gives
interpreted functions, which cannot be compiled.
"""

from __future__ import annotations

import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

T4 = GPUTarget("cuda", 75, 32)
POINTERS = {"x_ptr": "*fp16", "s_ptr": "*fp16", "z_ptr": "*fp16", "y_ptr": "*fp16", "sums_ptr": "*fp32",
            "arrivals_ptr": "*i32"}


def compile_for_t4(kernel, constants: dict, num_warps: int, num_stages: int = 1):
    """kernel compiled to a cubin for compute capability 7.5, its integer arguments and pointers 16-aligned, as the
    launcher specializes them for the benchmark's shapes."""
    weights = "*i32" if constants["BITS"] == 4 else "*i8"
    signature = {name: "constexpr" if name in constants else POINTERS.get(name, weights if name == "w_ptr" else "i32")
                 for name in kernel.arg_names}
    aligned = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(kernel.arg_names)
               if signature[name] != "constexpr" and name not in ("M", "SPLIT")}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=aligned)
    return triton.compile(source, target=T4, options={"num_warps": num_warps, "num_stages": num_stages})


def main(bits: int) -> None:
    import reference.ex5_10_int4_kernel as ref

    group = 64 if bits == 4 else 4096
    for tile in ref._tiles(1, group, bits) + ref._tiles(16, group, bits):
        if tile.gemv:
            constants = dict(GROUP=group, BITS=bits, ROWS=tile.rows, BLOCK_N=tile.block_n, EVEN_N=True, ATOMIC=True)
            compiled = compile_for_t4(ref._gemv_kernel, constants, tile.num_warps)
        else:
            constants = dict(GROUP=group, BITS=bits, BLOCK_M=tile.block_m, BLOCK_N=tile.block_n, BLOCK_K=tile.rows,
                             ATOMIC=True)
            compiled = compile_for_t4(ref._dot_kernel, constants, tile.num_warps, tile.num_stages)
        target = next(line.split()[1] for line in compiled.asm["ptx"].splitlines() if line.startswith(".target"))
        print(f"{tile}: {target} {len(compiled.asm['cubin'])} bytes")


if __name__ == "__main__":
    main(int(sys.argv[1]))
