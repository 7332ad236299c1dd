"""Where a `${{ }}` in a script would stay literal text: inside a shell's single
quotes or a Python string.  The value of an expression reaches a script in an
environment variable, never pasted into its code, so such a place is a mistake.
"""

from __future__ import annotations

from runner.expr.templates import Template


def literal_expression(run: Template, shell: str) -> str:
    """A warning if an expression in the script `run` stays literal text in `shell`, else ''."""
    text = "".join(p if isinstance(p, str) else _PLACEHOLDER for p in run.parts)
    if shell in ("sh", "bash") and _in_single_quotes(text):
        return 'a `${{ }}` inside single quotes stays literal text in the shell; use double quotes: "${{ … }}"'
    if shell == "python" and _in_python_string(text):
        return "a `${{ }}` inside a Python string stays literal text; write it as a value: print(${{ … }})"
    return ""


_PLACEHOLDER = "\0"


def _in_python_string(script: str) -> bool:
    """Whether a placeholder falls inside a Python string literal other than an f-string."""
    import io
    import tokenize

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(script.replace(_PLACEHOLDER, "__expr__")).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return False
    for token in tokens:
        if token.type == tokenize.STRING and "__expr__" in token.string:
            prefix = token.string[: len(token.string) - len(token.string.lstrip("rRbBuUfF"))]
            if "f" not in prefix.lower():
                return True
    return False


def _in_single_quotes(script: str) -> bool:
    """Whether a placeholder (standing for an expression) falls inside a '…' string of a shell script."""
    quote = None
    i = 0
    while i < len(script):
        c = script[i]
        if quote == "'":
            if c == "'":
                quote = None
            elif c == _PLACEHOLDER:
                return True
        elif c == "\\":
            i += 1
        elif quote == '"':
            if c == '"':
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or script[i - 1] in " \t\n"):
            end = script.find("\n", i)
            i = len(script) if end < 0 else end
            continue
        i += 1
    return False
