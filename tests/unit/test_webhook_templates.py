"""Webhook payload templates (spec Task 4): Jinja2-style variable substitution with strict
undefined and a fuel limit; a bad template is refused when it is compiled, with its line.

The differential tests render the same templates with Jinja2 (StrictUndefined, no
autoescaping) and require the same output.
"""

from __future__ import annotations

import json
from typing import Any

import jinja2
import pytest

import omnicloud as oc

CONTEXT: dict[str, Any] = {
    "deployment_id": "dep-01",
    "tenant_id": "acme",
    "service_name": "checkout",
    "old_state": "in_progress",
    "new_state": "failed",
    "duration_seconds": 95.5,
    "links": {"logs": "https://ci.example/logs/dep-01", "deployment": "https://ci.example/d/dep-01"},
    "tags": ["canary", "eu"],
}

TEMPLATES = [
    "{{ service_name }} went from {{ old_state }} to {{ new_state }}",
    '{"text": "{{ service_name }} {{ new_state }}", "id": {{ deployment_id | tojson }}}',
    "{% if new_state == 'failed' %}ALERT {{ deployment_id }}{% else %}ok{% endif %}",
    "{% for t in tags %}[{{ t | upper }}]{% endfor %} {{ tags | length }}",
    "{{ links.logs }} / {{ links['deployment'] }}",
    "{{ duration_seconds | round(0) }} s, {{ tenant_id ~ '-' ~ service_name }}",
    "{{ service_name | default('none') }} {{ missing | default('fallback') }}",
    "{% set n = tags | length %}{{ n * 2 }} {{ (duration_seconds / 2) | int }}",
]


def jinja(source: str, context: dict[str, Any]) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    env.policies["json.dumps_kwargs"] = {"sort_keys": True}
    return env.from_string(source).render(context)


@pytest.mark.parametrize("source", TEMPLATES)
def test_renders_like_jinja2(source: str) -> None:
    assert oc.Template(source).render(CONTEXT) == jinja(source, CONTEXT)


def test_render_json_parses_the_output_and_the_source_is_kept() -> None:
    source = '{"deployment": {{ deployment_id | tojson }}, "tags": {{ tags | tojson }}}'
    t = oc.Template(source)
    assert t.render_json(CONTEXT) == {"deployment": "dep-01", "tags": ["canary", "eu"]}
    assert t.source == source
    assert json.loads(t.render(CONTEXT)) == t.render_json(CONTEXT)


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("{% for x in %}", 1),
        ("line one\nline two\n{{ x | }}", 3),
        # The line of the block left open (Jinja2 names the end of the input instead).
        ("{% if a %}\nopen forever", 1),
        ("{{ }}", 1),
    ],
)
def test_a_bad_template_is_refused_with_its_line(source: str, line: int) -> None:
    with pytest.raises(oc.TemplateError) as err:
        oc.Template(source)
    assert err.value.line == line
    assert f"line {line}" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_an_undefined_variable_is_an_error_naming_it() -> None:
    with pytest.raises(oc.TemplateError, match="deploymentid"):
        oc.Template("ok\n{{ deploymentid }}").render(CONTEXT)


def test_the_fuel_limit_stops_a_runaway_template() -> None:
    with pytest.raises(oc.TemplateError, match="fuel"):
        oc.Template("{% for i in range(10000000) %}x{% endfor %}").render({})
    with pytest.raises(oc.TemplateError, match="fuel"):
        oc.Template("{% for a in range(1000) %}{% for b in range(1000) %}.{% endfor %}{% endfor %}").render({})


def test_output_that_is_not_json_is_refused_by_render_json() -> None:
    t = oc.Template('{"state": {{ new_state }}}')
    assert t.render(CONTEXT) == '{"state": failed}'
    with pytest.raises(oc.TemplateError, match="not valid JSON"):
        t.render_json(CONTEXT)


def test_bad_arguments_are_typed_errors() -> None:
    with pytest.raises(oc.TemplateError, match="65536"):
        oc.Template("x" * (64 * 1024 + 1))
    with pytest.raises(TypeError):
        oc.Template(42)  # type: ignore[arg-type]
    t = oc.Template("{{ a }}")
    with pytest.raises(TypeError):
        t.render(["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)):
        t.render({"a": object()})
