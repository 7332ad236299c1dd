"""runner/templates.py (``${{ }}`` expressions in the sandbox) and the script rendering
of runner/executors/scripts.py (values reach a step as variables, never as script text)."""

from __future__ import annotations

import time

import pytest

from runner.executors.scripts import ScriptError, render
from runner.expr.templates import (
    TemplateError,
    parse_condition,
    parse_expression,
    parse_template,
    render_value,
    to_text,
)


def value(text: str, scope: dict | None = None):
    return parse_template(text).render(scope or {})


def refused(text: str, scope: dict | None = None) -> str:
    """The TemplateError message for parsing or evaluating `text`."""
    with pytest.raises(TemplateError) as info:
        value(text, scope)
    return str(info.value)


SCOPE = {
    "inputs": {"n": 3, "on": True, "off": False, "nothing": None, "list": [1, "a b"], "map": {"k": "v"}, "f": 1.5},
}


# -- only ${{ }} is special ----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{{ x }}",
        "{% if x %}y{% endif %}",
        "{# a comment #}",
        "{#",
        "${VAR}",
        "${#arr[@]}",
        "echo ${HOME} {{ a }} {% b %} {# c",
        "$ { { x } }",
        "price: $5 {{",
    ],
)
def test_text_without_dollar_braces_passes_through(text):
    assert value(text) == text


def test_other_syntax_beside_an_expression_passes_through():
    assert value("{{ a }} ${{ inputs.n }} {% b %} ${X} ${#arr[@]}", SCOPE) == "{{ a }} 3 {% b %} ${X} ${#arr[@]}"


def test_dollar_before_an_expression_stays():
    assert value("$${{ inputs.n }}", SCOPE) == "$3"


# -- native values and text ----------------------------------------------------


def test_whole_field_expression_gives_a_list():
    assert value("${{ range(3) | list }}") == [0, 1, 2]


def test_whole_field_expression_gives_an_int():
    result = value("${{ inputs.n + 1 }}", SCOPE)
    assert result == 4 and type(result) is int


def test_whole_field_expression_gives_a_dict():
    assert value("${{ inputs.map }}", SCOPE) == {"k": "v"}


def test_whole_field_expression_gives_a_bool_and_none():
    assert value("${{ inputs.on }}", SCOPE) is True
    assert value("${{ inputs.nothing }}", SCOPE) is None


def test_whitespace_around_a_single_expression_makes_it_text():
    assert value(" ${{ inputs.n }} ", SCOPE) == " 3 "


@pytest.mark.parametrize(
    "text, expected",
    [
        ("n=${{ inputs.n }}", "n=3"),
        ("on=${{ inputs.on }}", "on=true"),
        ("off=${{ inputs.off }}", "off=false"),
        ("none=${{ inputs.nothing }}", "none="),
        ("list=${{ inputs.list }}", 'list=[1,"a b"]'),
        ("map=${{ inputs.map }}", 'map={"k":"v"}'),
        ("f=${{ inputs.f }}", "f=1.5"),
        ("${{ inputs.n }}${{ inputs.n }}", "33"),
        ("${{ 'é' }} ${{ ['é'] }}", 'é ["é"]'),
    ],
)
def test_mixed_fields_are_text_spelt_as_json(text, expected):
    assert value(text, SCOPE) == expected


def test_to_text():
    assert to_text("x") == "x"
    assert to_text(True) == "true"
    assert to_text(False) == "false"
    assert to_text(None) == ""  # docs/workflow-format.md: "nothing for null"
    assert to_text(7) == "7"
    assert to_text([1, {"a": None}]) == '[1,{"a":null}]'


def test_render_nested_values():
    compiled = {"a": (parse_template("${{ inputs.n }}"), parse_template("x-${{ inputs.n }}"), 5), "b": "plain"}
    assert render_value(compiled, SCOPE) == {"a": [3, "x-3", 5], "b": "plain"}


# -- parsing -------------------------------------------------------------------


def test_closing_braces_inside_a_quoted_string():
    assert value("${{ '}}' }}") == "}}"
    assert value('echo ${{ "a}}b" }} done') == "echo a}}b done"
    assert value("${{ 'x' ~ '}}' ~ \"}}\" }}!") == "x}}}}!"


def test_escaped_quote_inside_a_string():
    assert value(r"${{ 'it\'s }}' }}") == "it's }}"


def test_unclosed_expression_is_refused():
    assert "never closed" in refused("echo ${{ inputs.n ")


def test_empty_expression_is_refused():
    assert "empty expression" in refused("${{ }}")


def test_expression_that_does_not_parse_is_refused_with_its_source():
    message = refused("${{ 1 + }}")
    assert "`1 +`" in message and "does not parse" in message


def test_unknown_filter_is_refused_before_evaluating():
    with pytest.raises(TemplateError, match="no filter named `uppper`"):
        parse_template("${{ 'x' | uppper }}")


def test_unknown_test_is_refused_before_evaluating():
    with pytest.raises(TemplateError, match="no test named `shiny`"):
        parse_template("${{ 1 is shiny }}")


def test_refs_name_what_an_expression_uses():
    expr = parse_expression("inputs.n + jobs.build.outputs.x | length + steps['s'].outputs.y")
    assert {("inputs", "n"), ("jobs", "build"), ("steps", "s")} <= expr.refs


def test_condition_with_or_without_dollar_braces():
    scope = {"inputs": {"n": 3}}
    assert parse_condition("inputs.n == 3").render(scope) is True
    assert parse_condition("${{ inputs.n == 4 }}").render(scope) is False
    assert parse_condition(True).render({}) is True


# -- undefined names -----------------------------------------------------------


def test_undefined_name_names_the_name():
    assert "`nope`" in refused("${{ nope }}")


def test_undefined_attribute_names_the_attribute():
    message = refused("${{ inputs.missing }}", SCOPE)
    assert "`missing`" in message


def test_undefined_name_inside_text_is_an_error():
    assert "`nope`" in refused("value: ${{ nope.x }}")


def test_undefined_job_names_the_job():
    message = refused("${{ jobs.ghost.outputs.x }}", {"jobs": {}})
    assert "jobs.ghost" in message


# -- the sandbox ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "${{ ''.__class__ }}",
        "${{ ''.__class__.__mro__[1].__subclasses__() }}",
        "${{ x.__globals__ }}",
        "${{ range.__globals__ }}",
        "${{ x|attr('__class__') }}",
        "${{ range|attr('__globals__') }}",
        "${{ ''.format_map }}",
        "${{ '{a.__class__}'.format_map({'a': ''}) }}",
        "${{ '{0.__globals__}'.format(range) }}",
        "${{ cycler }}",
        "${{ cycler(1, 2).next() }}",
        "${{ lipsum }}",
        "${{ lipsum() }}",
        "${{ joiner }}",
        "${{ joiner(',')() }}",
        "${{ x.update({'b': 2}) }}",
        "${{ namespace.__init__ }}",
    ],
)
def test_sandbox_escapes_are_refused(text):
    scope = {"x": {"a": 1}}
    with pytest.raises(TemplateError):
        value(text, scope)
    assert scope == {"x": {"a": 1}}


@pytest.mark.parametrize(
    "text",
    [
        "${{ 2**100000000 }}",
        "${{ 2 ** (10 ** 9) }}",
        "${{ (2 ** 10) ** 100000 }}",
        "${{ 'a' * 10**9 }}",
        "${{ 10**9 * 'a' }}",
        "${{ [1] * 10**9 }}",
        "${{ 'a' * 1000000 * 1000 }}",
        "${{ range(10**9)|list }}",
        "${{ range(10**9)|sum }}",
    ],
)
def test_resource_bombs_are_stopped_quickly(text):
    start = time.perf_counter()
    with pytest.raises(TemplateError):
        value(text)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "text",
    [
        "${{ 'ab' | center(10**8) }}",
        "${{ '{:>100000000}'.format('x') }}",
        "${{ '%100000000s' % 'x' }}",
        "${{ 'a\\nb' | indent(10**8) }}",
        "${{ ('x' * 1000000) | replace('x', 'x' * 1000000) }}",
    ],
)
def test_string_functions_cannot_build_huge_strings(text):
    # Docs: repeating text past a million items is refused; padding, indenting
    # or replacing up to a hundred million characters or more is the same bomb
    # by another name, and must fail as a TemplateError, not a MemoryError.
    start = time.perf_counter()
    with pytest.raises(TemplateError):
        value(text)
    assert time.perf_counter() - start < 1.0


def test_large_but_allowed_values_still_work():
    assert len(value("${{ 'a' * 1000 }}")) == 1000
    assert value("${{ 2 ** 64 }}") == 2**64
    assert value("${{ range(1000) | sum }}") == 499500


# -- jobs.<id> and steps.<id> --------------------------------------------------


def test_jobs_items_is_the_job_named_items_not_dict_items():
    scope = {"jobs": {"items": {"outputs": {"x": 1}}, "keys": {"outputs": {"x": 2}}}}
    assert value("${{ jobs.items.outputs.x }}", scope) == 1
    assert value("${{ jobs.keys.outputs.x }}", scope) == 2
    assert value("${{ jobs['items'].outputs.x }}", scope) == 1


def test_steps_update_is_the_step_named_update():
    scope = {"steps": {"update": {"outputs": {"v": "u"}}, "get": {"outputs": {"v": "g"}}}}
    assert value("${{ steps.update.outputs.v }}", scope) == "u"
    assert value("${{ steps.get.outputs.v }}", scope) == "g"


def test_output_named_like_a_dict_method_is_the_output():
    scope = {"jobs": {"a": {"outputs": {"items": [1, 2], "values": "v"}}}}
    assert value("${{ jobs.a.outputs.items }}", scope) == [1, 2]
    assert value("${{ jobs.a.outputs.values }}", scope) == "v"


def test_expressions_differing_only_in_job_id_share_a_shape():
    a = parse_expression("jobs.j1.outputs.n + 1")
    b = parse_expression("jobs.j2.outputs.n + 1")
    assert a.shape == b.shape
    assert a.refs == {("jobs", "j1")} and b.refs == {("jobs", "j2")}
    scope = {"jobs": {"j1": {"outputs": {"n": 10}}, "j2": {"outputs": {"n": 20}}}}
    assert a.evaluate(scope) == 11
    assert b.evaluate(scope) == 21


def test_expressions_differing_only_in_step_id_share_a_shape():
    a = parse_expression("steps.s1.outputs.v | upper")
    b = parse_expression("steps.s2.outputs.v | upper")
    assert a.shape == b.shape
    scope = {"steps": {"s1": {"outputs": {"v": "one"}}, "s2": {"outputs": {"v": "two"}}}}
    assert (a.evaluate(scope), b.evaluate(scope)) == ("ONE", "TWO")


def test_job_id_inside_a_string_literal_is_left_alone():
    expr = parse_expression("'jobs.a.outputs' ~ jobs.a.outputs.x")
    scope = {"jobs": {"a": {"outputs": {"x": "!"}}}}
    assert expr.evaluate(scope) == "jobs.a.outputs!"


def test_expressions_sharing_a_shape_keep_their_own_constants():
    scope = {"jobs": {"j1": {"outputs": {"n": 10}}}}
    assert parse_expression("jobs.j1.outputs.n + 1").evaluate(scope) == 11
    assert parse_expression("jobs.j1.outputs.n + 2").evaluate(scope) == 12
    assert parse_expression("jobs.j1.outputs.n * 1.5").evaluate(scope) == 15.0


# -- | raw ---------------------------------------------------------------------


@pytest.mark.parametrize("source", ["x | raw", "x|raw", "inputs.cmd | trim | raw"])
def test_raw_filter_is_detected(source):
    assert parse_expression(source).raw


@pytest.mark.parametrize("source", ["x", "x | upper", "(x | raw) ~ 'a'", "'raw'"])
def test_expressions_without_a_final_raw_are_not_raw(source):
    assert not parse_expression(source).raw


def test_raw_filter_leaves_the_value_unchanged():
    assert value("${{ 'a b' | raw }}") == "a b"


# -- scripts: values never become script text ----------------------------------

HOSTILE = [
    "it's \"quoted\"",
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "line one\nline two",
    "; rm -rf / #",
    "-rf",
    "${HOME}",
    "'; import os; os.system('touch /tmp/pwned') #",
    "\\",
    "\"); __import__('os').system('x'); (\"",
]

REFERENCES = {
    "sh": "${RUNNER_EXPR_1}",
    "bash": "${RUNNER_EXPR_1}",
    "python": "__import__('os').environ['RUNNER_EXPR_1']",
}


@pytest.mark.parametrize("shell", sorted(REFERENCES))
@pytest.mark.parametrize("hostile", HOSTILE)
def test_script_holds_only_a_variable_reference(shell, hostile):
    template = parse_template("echo ${{ inputs.v }} done")
    text, variables = render(template, shell, {"inputs": {"v": hostile}})
    assert text == f"echo {REFERENCES[shell]} done"
    assert variables == {"RUNNER_EXPR_1": hostile}


def test_node_script_holds_only_a_variable_reference():
    text, variables = render(parse_template("console.log(${{ inputs.v }})"), "node", {"inputs": {"v": "$(id)"}})
    assert text == "console.log(process.env.RUNNER_EXPR_1)"
    assert variables == {"RUNNER_EXPR_1": "$(id)"}


def test_custom_shell_uses_a_shell_variable():
    text, variables = render(parse_template("echo ${{ inputs.v }}"), "bash -e {0}", {"inputs": {"v": "`id`"}})
    assert text == "echo ${RUNNER_EXPR_1}"
    assert variables == {"RUNNER_EXPR_1": "`id`"}


def test_each_expression_gets_its_own_variable():
    template = parse_template('a="${{ inputs.a }}"\nb="${{ inputs.b }}"\n')
    text, variables = render(template, "sh", {"inputs": {"a": "$(x)", "b": "`y`"}})
    assert text == 'a="${RUNNER_EXPR_1}"\nb="${RUNNER_EXPR_2}"\n'
    assert variables == {"RUNNER_EXPR_1": "$(x)", "RUNNER_EXPR_2": "`y`"}


def test_non_text_values_reach_the_script_as_text():
    template = parse_template("echo ${{ inputs.l }} ${{ inputs.b }} ${{ inputs.n }}")
    _, variables = render(template, "sh", {"inputs": {"l": [1, "a b"], "b": True, "n": 3}})
    assert variables == {"RUNNER_EXPR_1": '[1,"a b"]', "RUNNER_EXPR_2": "true", "RUNNER_EXPR_3": "3"}


def test_script_without_expressions_is_unchanged():
    script = "echo ${HOME} {{ x }} '${NAME}'\n"
    assert render(parse_template(script), "bash", {}) == (script, {})


def test_raw_pastes_the_value_into_the_script():
    text, variables = render(parse_template("${{ inputs.cmd | raw }} --flag"), "sh", {"inputs": {"cmd": "ls -l"}})
    assert text == "ls -l --flag"
    assert variables == {}


def test_raw_and_plain_expressions_mix():
    template = parse_template("${{ inputs.cmd | raw }} \"${{ inputs.arg }}\"")
    text, variables = render(template, "bash", {"inputs": {"cmd": "grep -r", "arg": "$(id)"}})
    assert text == 'grep -r "${RUNNER_EXPR_1}"'
    assert variables == {"RUNNER_EXPR_1": "$(id)"}


def test_nul_in_a_value_raises_script_error():
    with pytest.raises(ScriptError) as info:
        render(parse_template("echo ${{ inputs.v }}"), "sh", {"inputs": {"v": "a\0b"}})
    assert "NUL" in str(info.value)
    assert "inputs.v" in str(info.value)


def test_undefined_value_in_a_script_raises_template_error():
    with pytest.raises(TemplateError, match="`nope`"):
        render(parse_template("echo ${{ nope }}"), "sh", {})


@pytest.mark.parametrize(
    ("text", "scope", "message"),
    [
        ("${{ jobs.a.outputs.y }}", {"jobs": {"a": {"outputs": {"x": 1, "z": 2}}}}, "`jobs.a.outputs` has no `y` (it has: x, z)"),
        ("${{ inputs.m.q }}", {"inputs": {"m": {}}}, "`inputs.m` has no `q` (it has none)"),
        ("${{ inputs.n / 0 }}", {"inputs": {"n": 1}}, "`inputs.n / 0` cannot be evaluated: division by zero"),
        ("${{ inputs.n + 'a' }}", {"inputs": {"n": 1}}, "`+` does not apply to a number and a text"),
        ("${{ inputs.n < 'a' }}", {"inputs": {"n": 1}}, "cannot compare a number with a text (`<`)"),
    ],
)
def test_run_time_errors_are_in_the_words_of_the_workflow(text, scope, message):
    with pytest.raises(TemplateError) as info:
        parse_template(text).render(scope)
    assert message in str(info.value)
    for python in ("dict object", "ZeroDivisionError", "TypeError", "instances of"):
        assert python not in str(info.value)


def test_a_rendered_mapping_names_the_key_whose_expression_failed():
    with pytest.raises(TemplateError) as info:
        render_value({"fine": parse_template("${{ 1 }}"), "total": parse_template("${{ inputs.n.x }}")}, {"inputs": {"n": 3}})
    assert info.value.of("outputs") == "outputs.total: `inputs.n` is a number, which has no `x`"
    with pytest.raises(TemplateError) as info:
        parse_template("${{ jobs.nope.outputs.x }}").render({"jobs": {}})
    assert "`jobs.nope` is undefined" in str(info.value)
