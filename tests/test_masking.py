"""Masking secrets: every form a value takes in output, overlaps, short values, derived outputs."""

from __future__ import annotations

import base64
import html
import json
import re
import shlex
from urllib.parse import quote, quote_plus

from conftest import IMAGE_MAP, cli, write
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
