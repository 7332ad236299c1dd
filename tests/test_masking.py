"""Masking secrets: every form a value takes, in every output; overlaps, short values, derived outputs,
matrix instance names, the cache, and lines cut for their length."""

from __future__ import annotations

import base64
import html
import json
import re
import shlex
from urllib.parse import quote, quote_plus

from conftest import IMAGE_MAP, cli, state_of, write
from runner.masking import MASK, Masker

SECRET = "s3cr3t-Value/with+chars"
# Every character that some encoding changes: each form below differs from the value.
AWKWARD = "p/a+s=s&w%o\"r'd\\ $x y"


def lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def encodings(value: str) -> dict[str, str]:
    """The forms of `value` that a program printing it with the standard library may produce."""
    forms = {}
    for name, encode in (("quote", quote), ("quote_plus", quote_plus)):
        for safe in ("", "/"):
            encoded = encode(value, safe=safe)
            forms[f"{name}(safe={safe!r})"] = encoded
            forms[f"{name}(safe={safe!r}) lower-case hex"] = lower_hex(encoded)
    forms["json.dumps"] = json.dumps(value)[1:-1]
    forms["json.dumps(ensure_ascii=False)"] = json.dumps(value, ensure_ascii=False)[1:-1]
    forms["json.dumps quoted"] = json.dumps(value)
    forms["shlex.quote"] = shlex.quote(value)
    forms["repr"] = repr(value)
    forms["repr of the bytes"] = repr(value.encode())
    forms["html.escape"] = html.escape(value)
    forms["hex"] = value.encode().hex()
    forms["HEX"] = value.encode().hex().upper()
    forms["base64"] = base64.b64encode(value.encode()).decode()
    forms["urlsafe_b64encode"] = base64.urlsafe_b64encode(b"?" + value.encode()).decode()
    return forms


def test_the_value_and_each_line_of_a_multi_line_value():
    masker = Masker([SECRET, "first line\nsecond line"])
    assert masker.text(f"token={SECRET}.") == "token=***."
    assert masker.text("a second line here") == "a *** here"


def test_json_escaped_and_url_encoded_forms():
    masker = Masker(['pa"ss\\word'])
    assert masker.text(json.dumps({"p": 'pa"ss\\word'})) == '{"p": "***"}'
    masker = Masker([SECRET])
    assert SECRET not in masker.text(f"https://x/?t={quote(SECRET, safe='')}")
    assert MASK in masker.text(f"https://x/?t={quote(SECRET, safe='')}")


def test_every_standard_library_encoding_of_an_awkward_value():
    masker = Masker([AWKWARD, "pässwörd/ü"])
    for value in (AWKWARD, "pässwörd/ü"):
        for name, form in encodings(value).items():
            masked = masker.text(f"before {form} after")
            assert form not in masked, name
            assert masked.startswith("before ") and masked.endswith(" after") and MASK in masked, (name, masked)


def test_a_value_read_with_surrounding_whitespace_is_masked_without_it():
    masker = Masker(["  tok-1234 \n", "key-5678\r\n"])
    assert masker.text("a=tok-1234, b=key-5678.") == "a=***, b=***."


def test_percent_encoding_with_hex_digits_in_either_case():
    masker = Masker(["a/b c"])
    for text in ("a%2Fb%20c", "a%2fb%20c", "a%2fb+c", "a/b+c"):
        assert masker.text(f"x={text};") == "x=***;", text


def test_encoded_forms_are_masked_inside_json_of_json():
    masker = Masker([AWKWARD])
    twice = json.dumps(json.dumps({"password": AWKWARD}))
    assert MASK in masker.text(twice)


def test_masking_many_secrets_stays_fast():
    import time

    masker = Masker([f"secret-number-{i}-{AWKWARD}" for i in range(20)])
    lines = [f"line {i}: an ordinary log line of about eighty characters, nothing secret" for i in range(20000)]
    started = time.perf_counter()
    for line in lines:
        masker.text(line)
    per_line = (time.perf_counter() - started) / len(lines)
    assert per_line < 200e-6, f"{per_line * 1e6:.1f} µs a line"


def test_base64_at_every_offset_inside_longer_data():
    masker = Masker([SECRET])
    for prefix in (b"", b"a", b"ab", b"abc"):
        encoded = base64.b64encode(prefix + SECRET.encode() + b"tail").decode()
        masked = masker.text(encoded)
        assert MASK in masked, prefix
        assert len(masked) < len(encoded)


def test_overlapping_secrets_are_masked_as_one_stretch():
    masker = Masker(["abcdef", "defghi"])
    assert masker.text("xxabcdefghixx") == "xx***xx"


def test_values_too_short_to_mask_are_refused():
    masker = Masker(["abc", "abcd"])
    assert masker.too_short == ["abc"]
    assert masker.text("abc abcd") == "abc ***"


def test_short_secret_gets_a_warning_naming_it(tmp_path):
    path = write(tmp_path, "version: 1\nsecrets: [PIN]\njobs:\n  a: {outputs: {x: 1}}\n")
    result = cli("run", path, env={"PIN": "123"})
    assert result.returncode == 0
    assert "secret `PIN` is shorter than 4 characters and cannot be masked" in result.stderr
    assert "123" not in result.stderr


def test_an_output_derived_from_a_secret_stays_masked_downstream(docker, tmp_path):
    path = write(tmp_path, """
        version: 1
        secrets: [TOKEN]
        jobs:
          derive:
            outputs: {shout: "${{ secrets.TOKEN | upper | replace('-', '_') }}"}
          use:
            needs: derive
            image: alpine:3.20
            run: echo "derived is ${{ jobs.derive.outputs.shout }}"
    """)
    out = tmp_path / "out.json"
    result = cli("run", path, *IMAGE_MAP, "--output-json", out, env={"TOKEN": "tok-abc-def"}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    everything = result.stdout + result.stderr + out.read_text()
    assert "TOK_ABC_DEF" not in everything
    assert "derived is ***" in result.stdout


PRINTS_EVERY_FORM = """
    version: 1
    secrets: [TOKEN]
    jobs:
      encode:
        image: python:3.12-slim
        steps:
          - id: print
            shell: python
            run: |
              import base64, html, json, os, re, shlex, sys
              from urllib.parse import quote, quote_plus
              secret = ${{ secrets.TOKEN }}
              forms = [quote(secret), quote(secret, safe=""), quote_plus(secret), quote_plus(secret, safe="/"),
                       json.dumps(secret), json.dumps(secret, ensure_ascii=False), json.dumps({"p": secret}),
                       shlex.quote(secret), repr(secret), html.escape(secret), secret.encode().hex(),
                       base64.b64encode(secret.encode()).decode(), base64.urlsafe_b64encode(secret.encode()).decode()]
              forms += [re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), form) for form in forms[:4]]
              for form in forms:
                  print("form:", form)
                  print("form:", form, file=sys.stderr)
              with open(os.environ["RUNNER_OUTPUT"], "a") as out:
                  out.write("quoted=" + quote(secret) + "\\n")
        outputs: {quoted: "${{ steps.print.outputs.quoted }}"}
      lookup:
        # The error names the missing key: the secret, percent-encoded with `/` safe.
        outputs: {n: "${{ {'a': 1}[secrets.TOKEN | urlencode] }}"}
    outputs:
      quoted: ${{ jobs.encode.outputs.quoted }}
"""


def leaks(text: str, secret: str = AWKWARD) -> list[str]:
    return [name for name, form in encodings(secret).items() if form in text]


def test_no_encoding_of_a_secret_reaches_any_output(docker, tmp_path):
    path = write(tmp_path, PRINTS_EVERY_FORM)
    out, events = tmp_path / "out.json", tmp_path / "events.jsonl"
    result = cli("run", path, *IMAGE_MAP, "--output-json", out, "--events", events, env={"TOKEN": AWKWARD}, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    printed = [line for line in result.stdout.splitlines() if "form:" in line]
    assert len(printed) == 34 and all(MASK in line for line in printed), result.stdout
    summary = json.loads(out.read_text())
    run_id = summary["run_id"]
    assert summary["jobs"]["lookup"]["reason"].endswith(
        ":26:18: outputs.n: `***` is undefined in `{'a': 1}[secrets.TOKEN | urlencode]`"
    )
    assert summary["outputs"] == {"quoted": MASK}
    shown = {
        "console": result.stdout + result.stderr,
        "--output-json": out.read_text(),
        "--events": events.read_text(),
        "step logs": "".join(p.read_text() for p in state_of(tmp_path).rglob("*.log")),
        "runner logs": cli("logs", run_id, cwd=tmp_path).stdout,
        "runner runs show": cli("runs", "show", run_id, cwd=tmp_path).stdout,
        "runner runs show --format json": cli("runs", "show", run_id, "--format", "json", cwd=tmp_path).stdout,
    }
    for where in ("step logs", "runner logs"):
        printed = [line for line in shown[where].splitlines() if "form:" in line]
        assert len(printed) == 34 and all(MASK in line for line in printed), shown[where]
    for where, text in shown.items():
        assert not leaks(text), (where, leaks(text))


def test_no_encoding_of_a_secret_reaches_github_actions_output(docker, tmp_path):
    for name in ("output", "summary"):
        (tmp_path / name).touch()
    env = {
        "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(tmp_path), "TOKEN": AWKWARD,
        "GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
    }
    result = cli("run", write(tmp_path, PRINTS_EVERY_FORM), *IMAGE_MAP, env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    registered, *printed = result.stdout.splitlines()
    assert registered == f"::add-mask::{AWKWARD}"
    summary = (tmp_path / "summary").read_text()
    assert "| `lookup` | ❌ failure |" in summary and "`***` is undefined in" in summary
    assert '"quoted": "***"' in summary
    for where, text in {"log": "\n".join(printed) + result.stderr, "summary": summary,
                        "outputs": (tmp_path / "output").read_text()}.items():
        assert not leaks(text), (where, leaks(text))


def test_a_matrix_value_that_is_a_secret_is_masked_in_the_instance_name(docker, tmp_path):
    path = write(tmp_path, """
        version: 1
        secrets: [TOKEN, LONG]
        jobs:
          m:
            matrix:
              t: ["${{ secrets.TOKEN }}", "${{ secrets.LONG }}", plain]
            image: alpine:3.20
            run: echo "length ${{ matrix.t | length }}"
    """)
    long = "a-long-secret-value-whose-start-is-shown-" + "x" * 20
    out, events = tmp_path / "out.json", tmp_path / "events.jsonl"
    result = cli("run", path, *IMAGE_MAP, "--output-json", out, "--events", events,
                 env={"TOKEN": AWKWARD, "LONG": long}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(out.read_text())
    # Two instances whose names would read the same are told apart by their position.
    assert list(summary["jobs"]["m"]["instances"]) == ["m (t=***) #1", "m (t=***) #2", "m (t=plain)"]
    assert "[m (t=***) #2/1] length 61" in result.stdout
    run_id = summary["run_id"]
    shown = (result.stdout + result.stderr + out.read_text() + events.read_text()
             + cli("logs", run_id, cwd=tmp_path).stdout
             + cli("runs", "show", run_id, "--format", "json", cwd=tmp_path).stdout
             + "\n".join(str(p) for p in state_of(tmp_path).rglob("*")))
    assert long[:20] not in shown
    assert not leaks(shown)


def test_an_output_derived_from_a_secret_is_never_cached(docker, tmp_path):
    path = write(tmp_path, """
        version: 1
        secrets: [TOKEN]
        jobs:
          derive:
            image: alpine:3.20
            cache: true
            run: echo deriving
            outputs: {shout: "${{ secrets.TOKEN | upper }}"}
    """)
    result = cli("run", path, *IMAGE_MAP, env={"TOKEN": "tok-abc-def"}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not cached: its outputs hold a secret's value" in result.stdout
    for path in state_of(tmp_path).rglob("*"):
        if path.is_file():
            assert b"TOK-ABC-DEF" not in path.read_bytes(), path


def test_a_secret_where_a_long_line_is_cut_is_masked_whole(docker, tmp_path):
    # A line without a newline is cut every 64 KiB: the secret stands across the first cut.
    path = write(tmp_path, """
        version: 1
        secrets: [TOKEN]
        jobs:
          long:
            image: python:3.12-slim
            steps:
              - shell: python
                run: |
                  import sys
                  sys.stdout.write("x" * (64 * 1024 - 10) + ${{ secrets.TOKEN }} + "y" * 100)
    """)
    result = cli("run", path, *IMAGE_MAP, env={"TOKEN": AWKWARD}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "x***y" in result.stdout.replace("\n[long/1] ", "")
    for piece in (AWKWARD[:10], AWKWARD[10:]):
        assert piece not in result.stdout


def test_a_secret_made_a_number_is_masked(tmp_path):
    masker = Masker(["12345678"])
    assert masker.value({"n": 12345678, "f": 12345678.0, "other": 42, "b": True}, numbers=True) == {
        "n": MASK, "f": MASK, "other": 42, "b": True}
    # In a run's summary, the numbers a workflow computed are masked; runner's own stay numbers.
    summary = {"outputs": {"n": 12345678}, "jobs": {"a": {"outputs": [12345678], "duration_s": 12345678.0}}}
    assert masker.value(summary) == {"outputs": {"n": MASK}, "jobs": {"a": {"outputs": [MASK], "duration_s": 12345678.0}}}
    path = write(tmp_path, """
        version: 1
        secrets: [PIN]
        jobs:
          a:
            outputs: {n: "${{ secrets.PIN | int }}", f: "${{ secrets.PIN | float }}"}
          m:
            matrix: {pin: ["${{ secrets.PIN | int }}"]}
            outputs: {x: "${{ matrix.pin }}"}
        outputs:
          n: ${{ jobs.a.outputs.n }}
    """)
    out, events = tmp_path / "out.json", tmp_path / "events.jsonl"
    result = cli("run", path, "--output-json", out, "--events", events, env={"PIN": "12345678"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "  n: ***" in result.stdout
    shown = (result.stdout + out.read_text() + events.read_text()
             + cli("runs", "show", json.loads(out.read_text())["run_id"], "--format", "json", cwd=tmp_path).stdout)
    assert "12345678" not in shown
