"""sFlow v5 encoder and decoder: samples and datagrams to bytes and back.

Owns no socket and no clock.  Decoding checks that every record and sample
consumes exactly its declared length (rounded to 4) and turns any violation
into a :class:`DecodeError` that names where it happened.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import NamedTuple

from .records import COUNTER_RECORDS, FLOW_RECORDS, Record
from .samples import (
    COUNTER_SAMPLE,
    COUNTER_SAMPLE_EXPANDED,
    DISCARD_SAMPLE,
    FLOW_SAMPLE,
    FLOW_SAMPLE_EXPANDED,
    AnyRecord,
    BrokenRecord,
    CounterSample,
    Datagram,
    DiscardSample,
    FlowSample,
    Sample,
    UnknownRecord,
    UnknownSample,
)
from .xdr import ADDRESS, DecodeError, pad4, read_u32

_TL = struct.Struct(">II")
_FLOW_HEAD = struct.Struct(">11I")
_COUNTER_HEAD = struct.Struct(">4I")
_HEADS = {
    FLOW_SAMPLE_EXPANDED: _FLOW_HEAD,
    FLOW_SAMPLE: struct.Struct(">8I"),
    COUNTER_SAMPLE_EXPANDED: _COUNTER_HEAD,
    COUNTER_SAMPLE: struct.Struct(">3I"),
    DISCARD_SAMPLE: struct.Struct(">8I"),
}
"""Each known sample type's fixed header, ending with its record count."""
_DGRAM_TAIL = struct.Struct(">4I")

MAX_RECORDS_PER_SAMPLE = 1024
MAX_SAMPLES_PER_DATAGRAM = 4096


def encode_record(record: AnyRecord) -> bytes:
    """One record as tag, length and zero-padded body."""
    if isinstance(record, UnknownRecord):
        tag, body = record.tag, record.data
    else:
        tag, body = record.tag(), record.pack()
    n = len(body)
    return _TL.pack(tag, n) + body + b"\0" * (pad4(n) - n)


def _encode_records(records: list[AnyRecord]) -> bytes:
    return b"".join(encode_record(r) for r in records)


def encode_sample(sample: Sample) -> bytes:
    """One sample with its TLV header, ready to be placed in a datagram."""
    if isinstance(sample, FlowSample) and not sample.expanded:
        body = _HEADS[FLOW_SAMPLE].pack(
            sample.sequence & 0xFFFFFFFF,
            (sample.ds_class << 24) | (sample.ds_index & 0xFFFFFF),
            sample.sampling_rate,
            sample.sample_pool & 0xFFFFFFFF,
            sample.drops & 0xFFFFFFFF,
            (sample.input_format << 30) | (sample.input & 0x3FFFFFFF),
            (sample.output_format << 30) | (sample.output & 0x3FFFFFFF),
            len(sample.records),
        ) + _encode_records(sample.records)
        tag = FLOW_SAMPLE
    elif isinstance(sample, FlowSample):
        body = _FLOW_HEAD.pack(
            sample.sequence & 0xFFFFFFFF,
            sample.ds_class,
            sample.ds_index,
            sample.sampling_rate,
            sample.sample_pool & 0xFFFFFFFF,
            sample.drops & 0xFFFFFFFF,
            sample.input_format,
            sample.input,
            sample.output_format,
            sample.output,
            len(sample.records),
        ) + _encode_records(sample.records)
        tag = FLOW_SAMPLE_EXPANDED
    elif isinstance(sample, CounterSample) and not sample.expanded:
        body = _HEADS[COUNTER_SAMPLE].pack(
            sample.sequence & 0xFFFFFFFF, (sample.ds_class << 24) | (sample.ds_index & 0xFFFFFF), len(sample.records)
        ) + _encode_records(sample.records)
        tag = COUNTER_SAMPLE
    elif isinstance(sample, DiscardSample):
        body = _HEADS[DISCARD_SAMPLE].pack(
            sample.sequence & 0xFFFFFFFF, sample.ds_class, sample.ds_index, sample.drops & 0xFFFFFFFF,
            sample.input, sample.output, sample.reason, len(sample.records),
        ) + _encode_records(sample.records)
        tag = DISCARD_SAMPLE
    elif isinstance(sample, CounterSample):
        body = _COUNTER_HEAD.pack(
            sample.sequence & 0xFFFFFFFF, sample.ds_class, sample.ds_index, len(sample.records)
        ) + _encode_records(sample.records)
        tag = COUNTER_SAMPLE_EXPANDED
    else:
        body, tag = sample.data, sample.tag
    return _TL.pack(tag, len(body)) + body


@lru_cache(maxsize=16)
def _datagram_prefix(agent: object) -> bytes:
    """Version and agent address: the same for every datagram of an agent, so packed once
    (parsing the address anew cost about 1.5 µs per datagram on the flow path)."""
    return struct.pack(">I", 5) + ADDRESS.pack(agent)


def datagram_header(agent: object, sub_agent_id: int, sequence: int, uptime_ms: int, num_samples: int) -> bytes:
    """The datagram header: version 5, agent address, sub-agent, sequence, uptime, count."""
    return _datagram_prefix(agent) + _DGRAM_TAIL.pack(
        sub_agent_id, sequence & 0xFFFFFFFF, uptime_ms & 0xFFFFFFFF, num_samples
    )


def encode_datagram(datagram: Datagram) -> bytes:
    return datagram_header(
        datagram.agent, datagram.sub_agent_id, datagram.sequence, datagram.uptime_ms, len(datagram.samples)
    ) + b"".join(encode_sample(s) for s in datagram.samples)


# ------------------------------------------------------------------- decoding


class _Stop(DecodeError):
    """A fault inside a sample, carrying the part of the sample decoded before it."""

    def __init__(self, message: str, offset: int, partial: Sample | None) -> None:
        super().__init__(message)
        self.offset = offset
        self.partial = partial


def _where(index: int, tag: int) -> str:
    """How an error names a sample: made only when there is an error to report, not for every sample."""
    return f"sample {index} ({tag >> 12}:{tag & 0xFFF})"


class _Known(NamedTuple):
    """How the decoder treats one known record tag, looked up once per record."""

    cls: type[Record]
    plain: struct.Struct | None
    """The whole record as one struct of plain numbers (``Layout.plain``), for a record it builds."""
    head_then_length: struct.Struct | None
    """For a record it builds of plain numbers then one opaque (``Layout.plain_then_opaque``): the
    numbers and the opaque's length word."""
    lengths: frozenset[int] | None
    """None for a record it builds.  For one it only checks: the padded lengths its layout takes when
    the layout is all fixed-size fields (then the length is all the full decode checks of it), or
    empty when it has variable fields (then its layout is walked as for a built record)."""


def _fixed_lengths(cls: type[Record]) -> frozenset[int]:
    """The padded lengths the full decode accepts for a record of fixed-size fields, found by that
    decode's own layout walk over zeros (fixed fields take any bytes, so only the length matters);
    empty for a record with variable fields, whose check needs its bytes."""
    layout = cls.LAYOUT
    if any(not f.type.fixed for f in layout.fields):
        return frozenset()
    accepted = set()
    for n in range(0, pad4(sum(struct.calcsize(">" + f.type.fmt) for f in layout.fields)) + 4, 4):  # type: ignore[operator]
        try:
            _, used = layout.unpack(bytes(n), 0, n)  # type: ignore[arg-type]
        except DecodeError:
            continue
        if pad4(used) == n:
            accepted.add(n)
    return frozenset(accepted)


def _known(cls: type[Record], build: bool) -> _Known:
    layout = cls.LAYOUT
    if build:
        head = layout.plain_then_opaque
        return _Known(cls, layout.plain, None if head is None else struct.Struct(head.format + "I"), None)
    return _Known(cls, None, None, _fixed_lengths(cls))


@lru_cache(maxsize=8)
def _tables(only: frozenset[type[Record]] | None) -> tuple[dict[int, _Known], dict[int, _Known]]:
    """Per record tag of the record table: flow (and discard) sample records, counter records."""
    return tuple(  # type: ignore[return-value]
        {tag: _known(cls, only is None or cls in only) for tag, cls in table.items()}
        for table in (FLOW_RECORDS, COUNTER_RECORDS)
    )


def _sample_body(
    tag: int, buf: bytes, start: int, s_end: int, index: int, tables: tuple[dict[int, _Known], dict[int, _Known]]
) -> Sample:
    """One sample: its header, then its records.

    On a fault raises _Stop with the sample as far as it decoded (the records before the fault,
    and a BrokenRecord for a record whose body did not fit), so the caller can still print it as
    sflowtool does.  ``index`` names the sample in an error.  One function for header and records:
    a call per sample is a tenth of a flow sample's decode.
    """
    head = _HEADS.get(tag)
    if head is None:
        return UnknownSample(tag, buf[start:s_end])
    if s_end - start < head.size:
        where = _where(index, tag)
        raise _Stop(f"{where}: {s_end - start} bytes is shorter than its header at offset {start}", start, None)
    records: list[AnyRecord] = []
    sample: FlowSample | CounterSample | DiscardSample
    if tag == FLOW_SAMPLE_EXPANDED:
        seq, dsc, dsi, rate, pool, drops, infmt, inp, outfmt, out, count = head.unpack_from(buf, start)
        sample = FlowSample(dsc, dsi, rate, pool, drops, inp, out, records, seq, infmt, outfmt)
        table = tables[0]
    elif tag == FLOW_SAMPLE:
        seq, source, rate, pool, drops, inp, out, count = head.unpack_from(buf, start)
        sample = FlowSample(
            source >> 24, source & 0xFFFFFF, rate, pool, drops, inp & 0x3FFFFFFF, out & 0x3FFFFFFF, records, seq,
            inp >> 30, out >> 30, expanded=False,
        )
        table = tables[0]
    elif tag == COUNTER_SAMPLE_EXPANDED:
        seq, dsc, dsi, count = head.unpack_from(buf, start)
        sample = CounterSample(dsc, dsi, records, seq)
        table = tables[1]
    elif tag == COUNTER_SAMPLE:
        seq, source, count = head.unpack_from(buf, start)
        sample = CounterSample(source >> 24, source & 0xFFFFFF, records, seq, expanded=False)
        table = tables[1]
    else:
        seq, dsc, dsi, drops, inp, out, reason, count = head.unpack_from(buf, start)
        sample = DiscardSample(dsc, dsi, drops, inp, out, reason, records, seq)
        table = tables[0]
    off = start + head.size
    if count > MAX_RECORDS_PER_SAMPLE:
        sample.complete = False
        where = _where(index, tag)
        limit = MAX_RECORDS_PER_SAMPLE
        raise _Stop(f"{where}: {count} records exceeds the limit of {limit} at offset {off}", start, sample)
    append = records.append
    known_as = table.get
    unpack_tl = _TL.unpack_from
    for i in range(count):
        if off + 8 > s_end:
            sample.complete = False
            where = _where(index, tag)
            raise _Stop(f"{where}, record {i}: truncated record header at offset {off}", start, sample)
        r_tag, length = unpack_tl(buf, off)
        off += 8
        rec_end = off + ((length + 3) & ~3)
        known = known_as(r_tag)
        if rec_end > s_end:
            append(BrokenRecord(r_tag, None if known is None else known.cls))
            sample.complete = False
            where = _where(index, tag)
            record = f"record {i} ({r_tag >> 12}:{r_tag & 0xFFF})"
            raise _Stop(f"{where}, {record}: length {length} overruns the sample at offset {off}", start, sample)
        if known is None:
            append(UnknownRecord(r_tag, buf[off : off + length]))
            off = rec_end
            continue
        cls, plain, head_then_length, lengths = known
        if lengths is not None:
            if rec_end - off in lengths:
                off = rec_end  # a fixed-size record not built, of a length its layout takes
                continue
        elif plain is not None:
            if length == plain.size:
                append(cls.from_values(plain.unpack_from(buf, off)))
                off = rec_end
                continue
        elif head_then_length is not None and length >= head_then_length.size:
            # the sampled header: numbers and the opaque's length word, then its bytes filling the record
            *values, n = head_then_length.unpack_from(buf, off)
            at = off + head_then_length.size
            if at + ((n + 3) & ~3) == rec_end:
                values.append(buf[at : at + n])
                append(cls.from_values(values))
                off = rec_end
                continue
        # Bounded by the padded length, as sflowtool's length check is (an agent may declare
        # a sampled header's record length without the opaque's padding).
        try:
            values, used = cls.LAYOUT.unpack(buf, off, rec_end)
        except DecodeError as e:
            append(BrokenRecord(r_tag, cls))
            sample.complete = False
            where = _where(index, tag)
            record = f"record {i} ({cls.__name__} {r_tag >> 12}:{r_tag & 0xFFF})"
            raise _Stop(f"{where}, {record} at offset {off}: {e}", start, sample) from None
        if pad4(used - off) != pad4(length):
            append(BrokenRecord(r_tag, cls))
            sample.complete = False
            where = _where(index, tag)
            record = f"record {i} ({cls.__name__} {r_tag >> 12}:{r_tag & 0xFFF})"
            used_text = f"declared {length} bytes, layout uses {used - off}"
            raise _Stop(f"{where}, {record} at offset {off}: {used_text}", start, sample)
        if lengths is None:
            append(cls.from_values(values))
        off = rec_end
    if off != s_end:
        sample.complete = False
        where = _where(index, tag)
        raise _Stop(f"{where}: {s_end - off} bytes left over after {count} records at offset {off}", off, sample)
    return sample


def _overrun(
    tag: int, length: int, buf: bytes, off: int, end: int, index: int,
    tables: tuple[dict[int, _Known], dict[int, _Known]],
) -> _Stop:
    """The error for a sample whose length overruns the datagram or is not a multiple of 4.

    sflowtool reads the sample's header (and its records, up to the datagram's end) before it
    checks the length: so does this, for known types, to print what it read.
    """
    partial = None
    if tag in _HEADS and end - off - 8 >= _HEADS[tag].size:
        try:
            partial = _sample_body(tag, buf, off + 8, end, index, tables)
        except _Stop as stop:
            partial = stop.partial
        if partial is not None and not isinstance(partial, UnknownSample):
            partial.complete = False
    where = _where(index, tag)
    return _Stop(
        f"{where}: length {length} overruns the datagram or is not a multiple of 4 at offset {off}", off, partial
    )


def decode_datagram(data: bytes | memoryview, only: frozenset[type[Record]] | None = None) -> Datagram:
    """Decode one datagram; raises DecodeError naming the part that is wrong and its byte offset.

    Bytes after the last sample are ignored, as sflowtool ignores them.  A
    DecodeError raised after the header carries ``partial``: the datagram
    with the samples decoded before the fault (the last one marked
    incomplete), which the collector still prints.

    ``only``: build only these records (a reader that uses a few of them, as the Prometheus
    exporter does: building a record costs more than the rest of its decode).  The others are
    checked as the full decode checks them and left out, so the same datagrams raise the same
    errors at the same places either way; what comes back is the full decode without the records
    not asked for (unknown records are still kept).
    """
    tables = _tables(only)
    buf = data if type(data) is bytes else bytes(data)  # slices of bytes are bytes: no view, then copy
    end = len(buf)
    version, off = read_u32(buf, 0, end)
    if version != 5:
        raise DecodeError(f"datagram version {version}, expected 5")
    try:
        agent, off = ADDRESS.unpack(buf, off, end)
    except DecodeError as e:
        raise DecodeError(f"datagram header: agent address: {e}") from None
    if off + _DGRAM_TAIL.size > end:
        raise DecodeError(f"datagram header: truncated at offset {off}")
    sub_agent, seq, uptime, count = _DGRAM_TAIL.unpack_from(buf, off)
    off += _DGRAM_TAIL.size
    samples: list[Sample] = []
    datagram = Datagram(agent, sub_agent, seq, uptime, samples, declared_samples=count)
    try:
        if count > MAX_SAMPLES_PER_DATAGRAM:
            raise DecodeError(f"datagram header: {count} samples exceeds the limit of {MAX_SAMPLES_PER_DATAGRAM}")
        unpack_tl = _TL.unpack_from
        for i in range(count):
            if off + 8 > end:
                raise DecodeError(f"sample {i}: datagram ends at offset {off} after {i} of {count} samples")
            tag, length = unpack_tl(buf, off)
            s_end = off + 8 + length
            if length % 4 or s_end > end:
                raise _overrun(tag, length, buf, off, end, i, tables)
            samples.append(_sample_body(tag, buf, off + 8, s_end, i, tables))
            off = s_end
    except DecodeError as e:
        if isinstance(e, _Stop) and e.partial is not None:
            samples.append(e.partial)
        error = DecodeError(str(e))
        error.partial = datagram  # type: ignore[attr-defined]
        raise error from None
    return datagram
