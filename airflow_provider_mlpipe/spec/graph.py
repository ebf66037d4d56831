"""Stage wiring: which upstream output feeds each input, implied by artifact types, with explicit overrides.

Pure data (no Airflow), so ``mlpipe lint`` reports wiring errors and cycles exactly as the DAG factory sees them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter

from airflow_provider_mlpipe.spec.errors import FieldPath, suggest
from airflow_provider_mlpipe.spec.model import PipelineSpec
from airflow_provider_mlpipe.stages import EXAMPLES, PUSHED_MODEL, StageDescription, get_stage

DATA_GATE = "data_validation_gate"
BLESSING_GATE = "blessing_gate"
APPROVAL_GATE = "approval_gate"

# Where an input prefers to come from, when several stages produce its artifact type.
_PREFERRED: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("trainer", "examples"): (("transform", "transformed_examples"), ("example_gen", "examples")),
}
_DEFAULT_EXAMPLES = (("example_gen", "examples"),)  # everything else reads raw examples


class WiringError(Exception):
    def __init__(self, path: FieldPath, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass
class Node:
    node_id: str
    kind: str
    inputs: dict[str, str] = field(default_factory=dict)  # slot -> "<node>.<output slot>"
    upstream: set[str] = field(default_factory=set)  # task ids, gates included
    span_ordered: bool = False  # runs spans in order across runs (see reads_earlier_spans)


@dataclass
class Gate:
    task_id: str
    gate: str  # data_validation | blessing | approval
    upstream: str
    downstream: list[str]
    reads: dict[str, str] = field(default_factory=dict)  # stage kind -> node whose result the gate shows


@dataclass
class PipelineGraph:
    nodes: dict[str, Node]
    gates: list[Gate]

    def order(self) -> list[str]:
        """Stage ids, upstream first."""
        edges = {n: node.upstream & set(self.nodes) for n, node in self.nodes.items()}
        return list(TopologicalSorter(edges).static_order())


def reads_earlier_spans(stage: StageDescription) -> bool:
    """Whether a stage's result depends on what earlier spans left behind, so spans must reach it in order.

    A resolved input is looked up in MLMD (the previous span's statistics or schema, the baseline model), and a
    push compares with the model being served; run out of order, both would see a later span's state.
    """
    return bool(stage.resolved_inputs) or PUSHED_MODEL in stage.output_types()


def _producers(nodes: dict[str, str], artifact_type: str, exclude: str) -> list[tuple[str, str]]:
    out = []
    for node_id, kind in nodes.items():
        if node_id == exclude:
            continue
        for slot in get_stage(kind).outputs:
            if slot.artifact_type == artifact_type:
                out.append((node_id, slot.name))
    return out


def _pick(
    candidates: list[tuple[str, str]], preferences: tuple[tuple[str, str], ...], kinds: dict[str, str]
) -> tuple[tuple[str, str] | None, list[tuple[str, str]]]:
    """The preferred kind first; within a kind, the node named after it, else the only one (None if ambiguous)."""
    ranked = (
        [[c for c in candidates if (kinds[c[0]], c[1]) == pref] for pref in preferences]
        if preferences
        else [candidates]
    )
    for group in ranked:
        if not group:
            continue
        canonical = [c for c in group if c[0] == kinds[c[0]]]
        if canonical:
            return canonical[0], group
        return (group[0], group) if len(group) == 1 else (None, group)
    return None, []


def build_graph(spec: PipelineSpec) -> PipelineGraph:
    kinds = {name: stage.kind for name, stage in spec.stages.items() if stage.enabled}
    disabled = {name for name, stage in spec.stages.items() if not stage.enabled}
    nodes: dict[str, Node] = {}
    for name, kind in kinds.items():
        stage = spec.stages[name]
        desc = get_stage(kind)
        slots = {s.name: s for s in desc.inputs}
        node = Node(node_id=name, kind=kind, span_ordered=reads_earlier_spans(desc))
        for slot, source in stage.inputs.items():
            path: FieldPath = ("stages", name, "inputs", slot)
            if slot not in slots:
                raise WiringError(
                    path,
                    f"The {kind} stage has no input {slot!r}.{suggest(slot, slots)} "
                    f"Its inputs: {', '.join(slots) or 'none'}.",
                )
            up, _, out_slot = source.partition(".")
            out_slot = out_slot or slot
            if up in disabled:
                raise WiringError(path, f"The input comes from {up!r}, which is disabled.")
            if up not in kinds:
                raise WiringError(path, f"Unknown stage {up!r} in {source!r}.{suggest(up, kinds)}")
            outputs = {o.name: o.artifact_type for o in get_stage(kinds[up]).outputs}
            if out_slot not in outputs:
                raise WiringError(
                    path,
                    f"The {up} stage has no output {out_slot!r}.{suggest(out_slot, outputs)} "
                    f"Its outputs: {', '.join(outputs)}.",
                )
            if outputs[out_slot] != slots[slot].artifact_type:
                raise WiringError(
                    path,
                    f"{source!r} is a {outputs[out_slot]}, but the {slot!r} input takes a {slots[slot].artifact_type}.",
                )
            if up == name:
                raise WiringError(path, "A stage cannot read its own output.")
            node.inputs[slot] = f"{up}.{out_slot}"
        for slot in desc.inputs:
            if slot.name in node.inputs:
                continue
            candidates = _producers(kinds, slot.artifact_type, exclude=name)
            prefs = _PREFERRED.get((kind, slot.name)) or (_DEFAULT_EXAMPLES if slot.artifact_type == EXAMPLES else ())
            chosen, group = _pick(candidates, prefs, kinds)
            if chosen is None and group:
                options = ", ".join(f"{n}.{s}" for n, s in group)
                raise WiringError(
                    ("stages", name, "inputs"),
                    f"The {slot.name!r} input could come from {options}; choose one with inputs: {{{slot.name}: ...}}.",
                )
            if chosen is None:
                if slot.optional:
                    continue
                raise WiringError(
                    ("stages", name),
                    f"The {kind} stage needs a {slot.artifact_type} input ({slot.name!r}), but no enabled stage "
                    f"produces one. Enable the stage that does, or set stages.{name}.inputs.{slot.name}.",
                )
            node.inputs[slot.name] = f"{chosen[0]}.{chosen[1]}"
        node.upstream = {source.partition(".")[0] for source in node.inputs.values()}
        nodes[name] = node

    gates: list[Gate] = []
    for gate, task_id, upstream_kind, downstream_kinds in (
        ("data_validation", DATA_GATE, "example_validator", ("transform", "trainer")),
        ("blessing", BLESSING_GATE, "evaluator", ("pusher",)),
    ):
        if getattr(spec.gates, gate) is None:
            continue
        path = ("gates", gate)
        if task_id in kinds:
            raise WiringError(("stages", task_id), f"The name {task_id!r} is reserved for the {gate} gate.")
        upstream = [n for n, k in kinds.items() if k == upstream_kind]
        if not upstream:
            raise WiringError(path, f"The {gate} gate needs an enabled {upstream_kind} stage.")
        if len(upstream) > 1 and upstream_kind not in upstream:
            raise WiringError(path, f"The {gate} gate cannot choose between {', '.join(upstream)}.")
        source = upstream_kind if upstream_kind in upstream else upstream[0]
        downstream = [n for n, k in kinds.items() if k in downstream_kinds]
        gates.append(Gate(task_id=task_id, gate=gate, upstream=source, downstream=downstream))
        for n in downstream:
            nodes[n].upstream.add(task_id)
    if spec.gates.approval is not None:
        gates.append(_approval_gate(kinds, gates))
        for n in gates[-1].downstream:
            nodes[n].upstream.add(APPROVAL_GATE)
    _check_cycles(nodes, gates, explicit={n for n in kinds if spec.stages[n].inputs})
    return PipelineGraph(nodes=nodes, gates=gates)


def _approval_gate(kinds: dict[str, str], gates: list[Gate]) -> Gate:
    """The approval sits after the blessing gate (or the Evaluator) and before every Pusher."""
    path: FieldPath = ("gates", "approval")
    if APPROVAL_GATE in kinds:
        raise WiringError(("stages", APPROVAL_GATE), f"The name {APPROVAL_GATE!r} is reserved for the approval gate.")
    pushers = [n for n, k in kinds.items() if k == "pusher"]
    if not pushers:
        raise WiringError(path, "The approval gate holds a push, but no pusher stage is enabled.")
    reads = {}
    for kind in ("evaluator", "example_validator"):
        found = [n for n, k in kinds.items() if k == kind]
        if found:
            reads[kind] = kind if kind in found else found[0]
    if "evaluator" not in reads:
        raise WiringError(path, "The approval gate shows the Evaluator's metrics, so it needs an enabled evaluator.")
    blessing = next((g.task_id for g in gates if g.gate == "blessing"), None)
    return Gate(APPROVAL_GATE, "approval", blessing or reads["evaluator"], pushers, reads)


def _check_cycles(nodes: dict[str, Node], gates: list[Gate], explicit: set[str]) -> None:
    edges = {n: set(node.upstream) for n, node in nodes.items()}
    edges.update({g.task_id: {g.upstream} for g in gates})
    try:
        TopologicalSorter(edges).prepare()
    except CycleError as exc:
        cycle = list(reversed(exc.args[1][1:]))  # graphlib lists it downstream-first, closing node repeated
        # blame a stage whose inputs the user wrote: implied wiring alone never loops
        first = next((n for n in cycle if n in explicit), next(n for n in cycle if n in nodes))
        start = cycle.index(first)
        loop = [*cycle[start:], *cycle[:start], first]
        raise WiringError(("stages", first, "inputs"), f"The stages form a cycle: {' -> '.join(loop)}.") from None
