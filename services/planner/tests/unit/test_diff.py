"""The structural diff of two plans."""

from __future__ import annotations

from typing import Any

from baton_planner.diff import diff_plans


def step(id_: str, tool: str = "text.template", **fields: Any) -> dict[str, Any]:
    return {"id": id_, "tool": tool, "input": fields.pop("input", {"template": id_}), **fields}


V1 = {
    "steps": [
        step("fetch", "http.request", input={"url": "https://a.example/x", "method": "GET"}),
        step("shape", input={"template": "${steps.fetch.output.body}"}, depends_on=["fetch"]),
        step("gone", input={"template": "bye"}),
        step(
            "save",
            "files.write",
            input={"path": "out.md", "content": "${steps.shape.output}"},
            depends_on=["shape"],
        ),
    ]
}
V2 = {
    "steps": [
        step(
            "fetch",
            "http.request",
            input={"url": "https://b.example/x", "method": "GET"},
            retry={"max_attempts": 5},
        ),
        # renamed: same tool, same input
        step("format", input={"template": "${steps.fetch.output.body}"}, depends_on=["fetch"]),
        step(
            "save",
            "files.write",
            input={"path": "out.md", "content": "${steps.format.output}"},
            depends_on=["format"],
            requires_approval=True,
        ),
        step("notify", "http.request", input={"url": "https://hooks.example", "method": "POST"}),
    ]
}


def test_added_removed_renamed_and_changed_steps() -> None:
    d = diff_plans(V1, V2)
    assert d["added"] == [{"step": "notify", "tool": "http.request"}]
    assert d["removed"] == [{"step": "gone", "tool": "text.template"}]
    assert [(r["from"], r["to"]) for r in d["renamed"]] == [("shape", "format")]
    by_step = {c["step"]: c["changes"] for c in d["changed"]}
    # a reference to the renamed step is not a change, nor is the rename itself
    assert "format" not in by_step
    fetch = {(c["field"], c["path"]): (c["from"], c["to"]) for c in by_step["fetch"]}
    assert fetch == {
        ("input", "input.url"): ("https://a.example/x", "https://b.example/x"),
        ("retry", "retry.max_attempts"): (3, 5),
    }
    save = {(c["field"], c["path"]): (c["from"], c["to"]) for c in by_step["save"]}
    assert save == {("approval", "requires_approval"): (False, True)}
    assert d["summary"] == {"added": 1, "removed": 1, "renamed": 1, "changed": 2, "unchanged": 1}


def test_tool_and_dependency_changes_and_a_spelled_out_default_is_no_change() -> None:
    a = {"steps": [step("a"), step("b"), step("c", depends_on=["a"])]}
    b = {
        "steps": [
            step("a", retry={"max_attempts": 3}),  # the default, written out
            step("b", "json.query", input={"data": {}, "query": "x"}),
            step("c", depends_on=["b"]),
        ]
    }
    d = diff_plans(a, b)
    by_step = {c["step"]: c["changes"] for c in d["changed"]}
    assert "a" not in by_step
    tool = [c for c in by_step["b"] if c["field"] == "tool"]
    assert tool == [{"field": "tool", "path": "tool", "from": "text.template", "to": "json.query"}]
    [deps] = by_step["c"]
    assert deps["field"] == "depends_on" and deps["added"] == ["b"] and deps["removed"] == ["a"]


def test_identical_plans_have_no_changes_and_dissimilar_steps_are_not_renames() -> None:
    assert diff_plans(V1, V1)["summary"] == {
        "added": 0,
        "removed": 0,
        "renamed": 0,
        "changed": 0,
        "unchanged": 4,
    }
    a = {"steps": [step("one", input={"template": "alpha"})]}
    b = {"steps": [step("two", input={"template": "beta"})]}
    d = diff_plans(a, b)
    assert d["renamed"] == [] and len(d["added"]) == len(d["removed"]) == 1


def test_plan_level_changes() -> None:
    d = diff_plans(V1, {**V1, "max_parallel": 2})
    assert d["plan"] == [{"field": "max_parallel", "path": "max_parallel", "from": 16, "to": 2}]
