"""Masking secrets: every form a value takes in output, overlaps, short values, derived outputs."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

from conftest import IMAGE_MAP, cli, write
from runner.masking import MASK, Masker

SECRET = "s3cr3t-Value/with+chars"


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
