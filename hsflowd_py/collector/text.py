"""sflowtool's field model of a datagram, and its text and grep renderings.

A decoded datagram is turned once into a *view*: ordered ``(name, value)``
entries for the datagram, each sample and each record, with the names and
value spellings sflowtool uses.  Record fields come straight from the table
in ``sflow/records.py`` (labels, types that print themselves, the
``count_label``/``list_key`` hints and ``INTRO`` lines); the only addition
is the packet dissection of sampled headers.  ``jsonout`` renders the same
view as JSON, so text and JSON cannot disagree about a name or a value.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..sflow.layout import Field, Struct
from ..sflow.records import COUNTER, DISCARD_REASONS, FLOW, ExtendedWifiPayload, SampledHeader
from ..sflow.samples import (
    BrokenRecord,
    CounterSample,
    Datagram,
    DiscardSample,
    FlowSample,
    Sample,
    UnknownRecord,
    UnknownSample,
)
from ..sflow.xdr import ADDRESS
from .dissect import Entry, Note, dissect_header

__all__ = [
    "DatagramView",
    "Nested",
    "Received",
    "SampleView",
    "datagram_view",
    "element_entries",
    "entry_lines",
    "format_grep",
    "format_text",
    "iso_time",
]

START_DATAGRAM = "startDatagram ================================="
END_DATAGRAM = "endDatagram   ================================="
START_SAMPLE = "startSample ----------------------"
END_SAMPLE = "endSample   ----------------------"


@dataclass(frozen=True)
class Nested:
    """A list inside a record: JSON keeps it as ``key: [...]``; text flattens it.

    Text names scalar items ``<name>_<i>`` and prefixes the fields of object
    items with ``<name>_<i>_`` (``adaptor_0_MAC_1``), as sflowtool does.
    """

    key: str
    name: str
    items: list[str | list[ViewEntry]]


ViewEntry = Entry | Nested


class Received(NamedTuple):
    """What sflowtool prints about a datagram that is not in it: where and when it arrived.

    Reading a capture file sflowtool knows no receive time or source: it
    prints ``-`` and zeros, and adds the capture timestamp instead.  A tuple: one is made
    per datagram, and a frozen dataclass costs twice as much to make.
    """

    source: str
    seconds: int
    microseconds: int
    pcap_seconds: int | None = None
    pcap_microseconds: int = 0


@dataclass
class SampleView:
    """One sample: its own fields, then its records (``None`` for an undecoded sample type)."""

    fields: list[ViewEntry]
    elements: list[list[ViewEntry]] | None
    source_id: str = "0:0"
    tag: str = "0:0"
    complete: bool = True
    """False when a decode error stopped inside it: sflowtool prints no ``endSample`` then."""


@dataclass
class DatagramView:
    """A datagram as sflowtool shows it; ``context`` is the grep-mode line prefix."""

    fields: list[ViewEntry]
    samples: list[SampleView] = field(default_factory=list)
    context: str = ""


def iso_time(seconds: int) -> str:
    """sflowtool's ISO 8601 local time (``strftime("%Y-%m-%dT%H:%M:%S%z")``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


def _tag(tag: int) -> str:
    return f"{tag >> 12}:{tag & 0xFFF}"


# ------------------------------------------------------------------ records


def struct_entries(value: Struct) -> list[ViewEntry]:
    """The printed fields of a declared structure, in declaration order."""
    plan = _PLANS.get(type(value))
    if plan is None:
        plan = _PLANS[type(value)] = _plan(type(value))
    labels, texts, simple, getter = plan
    values = getter(value)
    if simple:  # every field one line: the common case, done without a per-field call of ours
        return list(zip(labels, [t(v) for t, v in zip(texts, values, strict=True)], strict=True))
    out: list[ViewEntry] = []
    for f, v in zip(value.FIELDS, values, strict=True):
        out.extend(_field_entries(f, v))
    return out


_Plan = tuple[tuple[str, ...], tuple[Callable[[Any], str], ...], bool, Callable[[Any], tuple[Any, ...]]]
_PLANS: dict[type, _Plan] = {}
"""Per structure: its labels, its fields' printers, whether each field is exactly one line, and a
getter of all its values at once."""


def _plan(cls: type[Struct]) -> _Plan:
    simple = all(
        not f.count_label and getattr(f.type, "item", None) is None and not f.type.omit_empty for f in cls.FIELDS
    )
    names = [f.name for f in cls.FIELDS]
    getter = operator.attrgetter(*names) if len(names) > 1 else lambda v: tuple(getattr(v, n) for n in names)
    return tuple(f.label for f in cls.FIELDS), tuple(f.type.text for f in cls.FIELDS), simple, getter


def _field_entries(f: Field, value: Any) -> Iterator[ViewEntry]:
    if f.count_label:
        yield (f.count_label, str(len(value)))
    item = getattr(f.type, "item", None)
    if item is not None:
        items = [struct_entries(v) if isinstance(v, Struct) else item.xdr.text(v) for v in value]
        yield Nested(f.list_key or f.label, f.label, items)
    elif not (f.type.omit_empty and not value):
        yield (f.label, f.type.text(value))


def _sampled_header(record: Any) -> list[Entry]:
    return dissect_header(record.header_protocol, record.frame_length, record.stripped, record.header)


_DECODED_CONTENT: dict[type, Callable[[Any], list[Entry]]] = {
    SampledHeader: _sampled_header,
    ExtendedWifiPayload: _sampled_header,
}
"""Records whose payload sflowtool decodes further than the table's fields."""


def element_entries(record: Any, kind: str) -> list[ViewEntry]:
    """One record with its ``flowBlock_tag``/``counterBlock_tag`` line first."""
    plan = _ELEMENT_PLANS.get((type(record), kind))
    if plan is None:
        tag_label, skipped = (
            ("counterBlock_tag", "counters_sample_element")
            if kind == COUNTER
            else ("flowBlock_tag", "flow_sample_element")
        )
        if isinstance(record, UnknownRecord):
            tag = _tag(record.tag)
            return [(tag_label, tag), Note(f"skipping unknown {skipped}: {tag} len={len(record.data)}")]
        if isinstance(record, BrokenRecord):
            # What sflowtool has printed when the record's body turns out not to fit: its first lines.
            tag = _tag(record.tag)
            if record.record_type is None:
                return [(tag_label, tag), Note(f"skipping unknown {skipped}: {tag}")]
            return [(tag_label, tag), *([record.record_type.INTRO] if record.record_type.INTRO else [])]
        cls = type(record)
        head = [(tag_label, _tag(cls.tag())), *([cls.INTRO] if cls.INTRO else [])]
        plan = _ELEMENT_PLANS[(cls, kind)] = (tuple(head), cls.RENDER or struct_entries, _DECODED_CONTENT.get(cls))
    head, render, content = plan
    out: list[ViewEntry] = [*head, *render(record)]
    if content is not None:
        out += content(record)
    return out


_ELEMENT_PLANS: dict[tuple[type, str], tuple[tuple[ViewEntry, ...], Callable[[Any], Any], Any]] = {}
"""Per declared record type and sample kind: its first lines, its printer and any further decode."""


def _prefixed(entries: list[ViewEntry], prefix: str) -> list[ViewEntry]:
    """sflowtool names every field of a discard sample's records ``discarded_...``."""
    return [e if isinstance(e, Note | Nested) else (prefix + e[0], e[1]) for e in entries]


# ------------------------------------------------------------------ samples


_PORT_FORMATS = {0: "{}", 1: "dropCode {}", 2: "multiple {}", 3: "format==3 {}"}


def _port(fmt: int, port: int) -> str:
    return _PORT_FORMATS.get(fmt, "").format(port)


def sample_view(sample: Sample) -> SampleView:
    """A sample's header fields and its records."""
    if isinstance(sample, UnknownSample):
        tag = _tag(sample.tag)
        note = Note(f"skipping unknown sample: {tag} len={len(sample.data)}")
        return SampleView([("sampleType_tag", tag), note], None, tag=tag)
    source_id = f"{sample.ds_class}:{sample.ds_index}"
    if isinstance(sample, DiscardSample):
        tag = "0:5"
        fields: list[ViewEntry] = [
            ("sampleType_tag", tag),
            ("sampleType", "DISCARD"),
            ("sampleSequenceNo", str(sample.sequence)),
            ("sourceId", source_id),
            ("dropEvents", str(sample.drops)),
            ("inputPort", str(sample.input)),
            ("outputPort", str(sample.output)),
            ("discardCode", str(sample.reason)),
            ("discardReason", DISCARD_REASONS.get(sample.reason, "NotFound")),
        ]
        elements = [_prefixed(element_entries(r, FLOW), "discarded_") for r in sample.records]
        return SampleView(fields, elements, source_id, tag, sample.complete)
    if isinstance(sample, FlowSample):
        tag, kind = ("0:3" if sample.expanded else "0:1"), FLOW
        fields = [
            ("sampleType_tag", tag),
            ("sampleType", "FLOWSAMPLE"),
            ("sampleSequenceNo", str(sample.sequence)),
            ("sourceId", source_id),
            ("meanSkipCount", str(sample.sampling_rate)),
            ("samplePool", str(sample.sample_pool)),
            ("dropEvents", str(sample.drops)),
            ("inputPort", _port(sample.input_format, sample.input)),
            ("outputPort", _port(sample.output_format, sample.output)),
        ]
    else:
        assert isinstance(sample, CounterSample)
        tag, kind = ("0:4" if sample.expanded else "0:2"), COUNTER
        fields = [
            ("sampleType_tag", tag),
            ("sampleType", "COUNTERSSAMPLE"),
            ("sampleSequenceNo", str(sample.sequence)),
            ("sourceId", source_id),
        ]
    elements = [element_entries(r, kind) for r in sample.records]
    return SampleView(fields, elements, source_id, tag, sample.complete)


def datagram_view(datagram: Datagram, size: int, received: Received) -> DatagramView:
    """The whole datagram as sflowtool prints it."""
    agent = ADDRESS.text(datagram.agent)
    declared = datagram.declared_samples
    fields: list[ViewEntry] = [
        ("datagramSourceIP", received.source),
        ("datagramSize", str(size)),
        ("unixSecondsUTC", str(received.seconds)),
        ("unixSecondsUTC_uS", str(received.microseconds)),
        ("localtime", iso_time(received.seconds)),
    ]
    if received.pcap_seconds is not None:
        fields.append(("pcapTimestamp", iso_time(received.pcap_seconds)))
        fields.append(("pcapTimestamp_uS", str(received.pcap_microseconds)))
    fields += [
        ("datagramVersion", str(datagram.version)),
        ("agentSubId", str(datagram.sub_agent_id)),
        ("agent", agent),
        ("packetSequenceNo", str(datagram.sequence)),
        ("sysUpTime", str(datagram.uptime_ms)),
        ("samplesInPacket", str(len(datagram.samples) if declared is None else declared)),
    ]
    when = received.pcap_seconds if received.pcap_seconds is not None else received.seconds
    context = f"{iso_time(when)} {agent} {datagram.sub_agent_id} {datagram.sequence}"
    return DatagramView(fields, [sample_view(s) for s in datagram.samples], context)


# ------------------------------------------------------------------ text


_Scope = tuple[str, str, str]
_OUTSIDE: _Scope = ("0:0", "0:0", "0:0")


def entry_lines(entries: list[ViewEntry], prefix: str = "") -> Iterator[str]:
    for entry in entries:
        if isinstance(entry, Note):
            yield str(entry)
        elif isinstance(entry, Nested):
            for i, item in enumerate(entry.items):
                if isinstance(item, str):
                    yield f"{prefix}{entry.name}_{i} {item}"
                else:
                    yield from entry_lines(item, f"{prefix}{entry.name}_{i}_")
        else:
            yield f"{prefix}{entry[0]} {entry[1]}"


def _scoped_lines(view: DatagramView) -> Iterator[tuple[_Scope, str]]:
    yield _OUTSIDE, START_DATAGRAM
    for line in entry_lines(view.fields):
        yield _OUTSIDE, line
    for sample in view.samples:
        scope = (sample.source_id, sample.tag, "0:0")
        yield scope, START_SAMPLE
        for line in entry_lines(sample.fields):
            yield scope, line
        for element in sample.elements or ():
            scope = (sample.source_id, sample.tag, str(element[0][1]))  # records start with their tag line
            for line in entry_lines(element):
                yield scope, line
        if sample.complete:
            yield scope, END_SAMPLE
    yield _OUTSIDE, END_DATAGRAM


def _add_lines(out: list[str], entries: list[ViewEntry]) -> None:
    pairs = [e for e in entries if type(e) is tuple]
    if len(pairs) == len(entries):  # no note, no nested list: the common case
        out += [f"{k} {v}" for k, v in pairs]
        return
    for entry in entries:
        if type(entry) is tuple:
            out.append(f"{entry[0]} {entry[1]}")
        else:
            out.extend(entry_lines([entry]))


def format_text(view: DatagramView) -> str:
    """sflowtool's default output for one datagram (the same lines as ``_scoped_lines``, built
    without a generator step per line: this is the collector's busiest path)."""
    out = [START_DATAGRAM]
    _add_lines(out, view.fields)
    for sample in view.samples:
        out.append(START_SAMPLE)
        _add_lines(out, sample.fields)
        for element in sample.elements or ():
            _add_lines(out, element)
        if sample.complete:
            out.append(END_SAMPLE)
    out.append(END_DATAGRAM)
    out.append("")
    return "\n".join(out)


def format_grep(view: DatagramView) -> str:
    """sflowtool's ``-g`` form: every line carries its context, so one ``grep`` finds a field with its origin.

    The prefix is ``time agent subAgentId datagramSequence sourceId sampleTag
    recordTag``, with ``0:0`` outside samples and records.  Unlike sflowtool,
    whose prefix only fills in as decoding proceeds, every line of a datagram
    gets the whole datagram context.
    """
    return "".join(f"{view.context} {' '.join(scope)} {line}\n" for scope, line in _scoped_lines(view))
