"""The lab: the chapter's tables computed by a target's own code on the real model, printed and written as each
section finishes.

实验：用所选目标的代码在真实模型上把显存、误差、质量和速度真正算出来（默认：有 reference/ 就用它，否则用 exercises；
开头一行说明用了哪个、为什么）。The target: --target, else $KATA_TARGET, else reference where reference/ exists
(a class copy has none: then exercises); the first line says which and why.

    python -m kata.lab                      # writes lab-report.md (about 13 minutes on 2 cores)
    python -m kata.lab --quick              # sections 1–5 only (under a minute)
    python -m kata.lab --full               # section 6 with every method at every bit width (about 21 minutes)
    python -m kata.lab --sensitivity        # add section 8: layer sensitivity and mixed precision (about 12 more)
    python -m kata.lab --qat                # add section 9: block-wise QAT at W3 and W2 (about 15 more)
    python -m kata.lab --target exercises   # your own code; unfinished exercises are marked so
    python -m kata.lab --readme README.md   # also replace README's measured-results block with this report
    (README's block: python -m kata.lab --sensitivity --qat --out docs/lab-report.md --readme README.md)

Rooms: context (settings, model, windows, baseline: built once, handed to every section), run (driver and
command line), basics (sections 1–5), quality (6), formats (7) with format_registry (one class per format),
sensitivity (8), qat (9) with block_qat.
"""
