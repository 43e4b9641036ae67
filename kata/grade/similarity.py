"""How close an answer is to the published reference solution, for the instructor's eye (it never changes points).

相似度：答案与参考答案的规范化 token 序列之比（difflib），注释、文档字符串和名字都不计：改了变量名的抄袭仍是 1.00。
The reference is public, so a copy cannot be prevented, only seen: both files become token sequences with comments
dropped, every string "S" and every name "N" (keywords kept), and the ratio of their longest matching blocks is
reported. A renamed copy reads 1.00; the untouched stubs read 0.2–0.5 against their references.
"""

from __future__ import annotations

import difflib
import io
import keyword
import tokenize

SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}


def normalised_tokens(source: str) -> list[str]:
    """The code's tokens with comments and layout dropped, strings as "S", names as "N" (an unparsable file: [])."""
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in SKIPPED:
                continue
            if tok.type == tokenize.STRING:
                out.append("S")
            elif tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
                out.append("N")
            else:
                out.append(tok.string)
    except (tokenize.TokenError, SyntaxError):
        return []
    return out


def similarity(answer: str, reference: str) -> float:
    """0 … 1: difflib's ratio of the two normalised token sequences."""
    return difflib.SequenceMatcher(None, normalised_tokens(answer), normalised_tokens(reference),
                                   autojunk=False).ratio()
