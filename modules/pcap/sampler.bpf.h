/* hsflowd-py packet sampler: a tc (clsact) classifier on the ingress and egress of each
 * sampled interface.  This file is the program; it is built two ways, which differ only in
 * how maps are declared and reached:
 *
 *   sampler_core.bpf.c  compiled once at build time by clang into a BPF object that libbpf
 *                       loads at run time (ebpf_core.py): no compiler, no kernel headers;
 *   sampler.bpf.c       compiled at start-up by bcc against the running kernel's headers
 *                       (ebpf_build.py), the path for hosts without libbpf.
 *
 * The front end defines PROGRAM(name) and SUBPROGRAM (a function the verifier walks once, on its
 * own, where the loader allows: libbpf's global functions; inlined for bcc) before including this
 * file, then the maps and the accessors declared below.
 *
 * Per packet: count it (per interface, both directions: the true sample pool), draw a
 * random number, and 1 time in N write the flow sample as it goes on the wire to sFlow
 * collectors (sampler_wire.h, from the agent's record table: sample head, 0:1 sampled header,
 * 0:1043 timestamp) into a BPF ring buffer, complete: its sequence number, sample pool and
 * drops come from the interface's counters here (struct tap_counts, shared by all CPUs,
 * changed only by atomic adds), so that the agent only cuts the ring into datagrams and sends
 * the samples from it as they are.  The sequence number is taken once the sample's place in
 * the ring is reserved: a sample the full ring refuses is a drop, never a gap in the sequence.
 * A sampled packet is counted then too, up to the segment sampled (the rest of a GSO packet
 * after its last sample): a sample's pool is the count of wire packets up to its own, and the
 * window in which two CPUs can take pools in the other order than their places is a few
 * instructions.  Samples are written without waking the reader (BPF_RB_NO_WAKEUP) except the one
 * with which another WAKE_BYTES of samples are written (ring_wake): the agent is woken once per
 * WAKE_BYTES whatever the packet rate, and drains the ring on a slow timer besides, for the
 * samples of quiet periods; an agent whose timer found the ring empty sleeps until the next
 * sample, which wakes it (WAKE_ASLEEP).  Where the front end defines KERNEL_DATAGRAMS (libbpf's
 * object) and the agent asks for it, samples are not written to the ring one by one but built into
 * whole datagrams (assemble, below), which the agent sends as they are.
 *
 * One packet in the kernel may stand for several on the wire (GSO on the way out, GRO on the
 * way in: skb->gso_segs segments of skb->gso_size payload bytes).  It counts as that many
 * packets in the pool, and its segments are drawn as wire packets would be: from a random
 * first one, every Nth.  Each sampled segment becomes a sample of that segment as the wire
 * carries it: its frame length, IPv4 total length (and identification and checksum) or IPv6
 * payload length, UDP length, TCP sequence number and flags, and its own payload bytes.  At
 * most SEGMENT_SAMPLES_MAX samples are taken of one packet; any more are counted as drops.
 *
 * Loopback (config.loopback): every packet leaves and comes back through the device; it is
 * counted and sampled once, as it comes in (lo's rx_packets), and never segmented (lo
 * carries the super-packet whole).
 *
 * The program reads only struct __sk_buff, the context's stable ABI that the verifier
 * rewrites for each kernel, so the object needs no relocation against kernel types.
 * It never changes a packet and returns TC_ACT_UNSPEC, so that the filters after it on the
 * same hook still run.
 */

#include "sampler_wire.h"

#ifndef HEADER_MAX
#define HEADER_MAX 256
#endif
/* The agent is woken by the sample with which the bytes of samples written to the ring, all
 * interfaces counted together (the map wake: one atomic add per sample, so exactly one wake-up
 * per WAKE_BYTES), pass a multiple of WAKE_BYTES: the datagrams the agent then sends at once are
 * as many whatever the samples' size, ~40-46 of 1,400 bytes (its default datagramBytes), which a
 * collector's default socket buffer (212,992 bytes, ~2.3 kB a datagram) holds; 150 at once it did
 * not (pmacct lost 2% in test_pcap_gso_wire).  Counted in samples, as before, 256 samples of
 * 64-byte packets were 28 datagrams and of 128-byte headers 43: woken by bytes, the agent is woken
 * 1.5 times less often for small samples, with no larger bursts. */
#define WAKE_BYTES (56 << 10)
/* The map "wake" (two u64 slots): the bytes of samples written, and whether the agent sleeps until the
 * next sample (set by the agent when its quiet-period drain found the ring empty: an idle agent is
 * then woken by the next sample, not ten times a second by its timer). */
#define WAKE_WRITTEN 0
#define WAKE_ASLEEP 1

/* bcc cannot hand bpf_loop a callback (0.26): it builds with NO_BPF_LOOP and a plain loop, which
 * the verifier walks once per turn, so it takes at most 2 samples of one packet (3 exceed the
 * verifier's budget). */
#ifdef NO_BPF_LOOP
#define SEGMENT_SAMPLES_MAX 2
#else
#define SEGMENT_SAMPLES_MAX 64
#endif

#define DIRECTION_UNKNOWN 0
#define DIRECTION_IN 1
#define DIRECTION_OUT 2

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define WIRE32(x) __builtin_bswap32(x)
#define HOST16(x) __builtin_bswap16(x)
#else
#define WIRE32(x) (x)
#define HOST16(x) (x)
#endif

struct tap_config {
    u32 rate;           /* 1-in-N */
    u32 header_bytes;   /* bytes of each sampled packet to copy */
    u8 mac[6];          /* the interface's own MAC: a sent frame carries it as its source */
    u8 check_source;    /* compare the source MAC of egress frames with mac */
    u8 ethernet;        /* frames start with an Ethernet header (else with the IP header) */
    u8 loopback;        /* count on ingress only, never segment */
    u8 pad[3];
};

struct tap_counts {
    u64 pool;           /* wire packets seen, both directions: the sample pool */
    u64 drops;          /* samples lost: the ring was full, or more samples of one packet than taken */
    u64 sequence;       /* the last flow sample's sequence number */
};

/* The flow sample's words up to the header bytes, in wire order (big-endian on the wire). */
enum {
    W_TAG, W_LENGTH, W_SEQUENCE, W_SOURCE_CLASS, W_SOURCE_INDEX, W_RATE, W_POOL, W_DROPS,
    W_INPUT_FORMAT, W_INPUT, W_OUTPUT_FORMAT, W_OUTPUT, W_RECORDS,
    W_HEADER_TAG, W_HEADER_LENGTH, W_PROTOCOL, W_FRAME_LENGTH, W_STRIPPED, W_HEADER_BYTES,
    W_WORDS
};
_Static_assert(W_WORDS * 4 == SFLOW_HEAD_BYTES, "sampler_wire.h and the word list disagree");

/* One sample being written (a per-CPU scratch value): the header area has room past HEADER_MAX
 * so that the verifier can prove every variable-offset access in bounds. */
struct wire {
    u32 word[W_WORDS];
    u8 header[2 * HEADER_MAX + SFLOW_TIMESTAMP_BYTES];
};

/* A ring record: the sample of its largest size (the ring reserves only sizes the verifier knows),
 * of which the sample's own length word says how much is the sample, padded so that with its ring
 * header it takes RECORD_SLOT bytes: a power of two, so that records lie at a fixed stride and
 * never across the end of the ring, which the agent then maps once, not twice (ebpf.py). */
#define RECORD_SLOT 512
struct record {
    u32 word[W_WORDS];
    u8 header[HEADER_MAX + SFLOW_TIMESTAMP_BYTES];
    u8 pad[RECORD_SLOT - 8 - SFLOW_HEAD_BYTES - HEADER_MAX - SFLOW_TIMESTAMP_BYTES];
};
_Static_assert(sizeof(struct record) + 8 == RECORD_SLOT, "a record and its ring header fill a slot");

#ifdef KERNEL_DATAGRAMS
/* Datagrams built here (the front end defines KERNEL_DATAGRAMS where bpf_spin_lock is at hand: libbpf's
 * object): while no enricher needs the packets, the agent sets the map assembly's `on`, and samples are
 * not written to the ring one by one but appended to the datagram being built, shared by all CPUs under
 * a spin lock, in the order of their sequence numbers (taken under the lock).  A datagram whose next
 * sample would take its samples past `room` bytes (the agent's datagram size less its header) goes to
 * the ring datagrams as one record, its samples as they go on the wire after the datagram header, which
 * the agent prepends: the agent reads one record and makes one system call per datagram and never
 * touches a sample.
 *
 * Two halves: samples go into one while the other is written to the ring outside the lock (a helper
 * call, which the lock forbids), so a sample waits for no copy.  A half becomes the one being built only
 * once written out (busy cleared).  A sample that finds the datagram full while it cannot go (the other
 * half still busy: the CPU writing it out was held up, a virtual CPU can be for milliseconds; or the ring
 * of datagrams with less than RING_MARGIN bytes free, so that a datagram written to it is never refused)
 * is appended past room, up to the half's own room (DATAGRAM_ROOM_MAX), and the agent cuts such a
 * datagram at its samples' ends; past that it is a drop (counted, never a gap).  Samples so keep the
 * order of their numbers on the way to the collector, also then: a sample sent on its own (the ring of
 * samples) could overtake the datagrams numbered before it. */
#define DATAGRAM_ROOM_MAX 8192  /* bytes of samples in a datagram at most: datagramBytes is 200..8192 */
#define SAMPLE_BYTES_MAX (SFLOW_HEAD_BYTES + HEADER_MAX + SFLOW_TIMESTAMP_BYTES)
#define RING_MARGIN (4 * (DATAGRAM_ROOM_MAX + SAMPLE_BYTES_MAX + 16))
#define DATAGRAM_FULL 0   /* a record's `why`: its next sample did not fit */
#define DATAGRAM_FLUSHED 1  /* asked for by the agent (its quiet-period drain), or written for a sleeping agent */

struct assembly {
    u32 room;  /* bytes of samples a datagram holds (0: the agent's datagrams are not built here) */
    u32 on;
};

/* A datagram being built, as the ring record it becomes. */
struct datagram {
    u32 count;  /* samples */
    u32 why;    /* DATAGRAM_FULL or DATAGRAM_FLUSHED */
    u32 used;   /* bytes of samples */
    u32 pad;
    u8 body[DATAGRAM_ROOM_MAX + SAMPLE_BYTES_MAX];  /* the last sample may pass room (alone, larger than it) */
};
#define DATAGRAM_RECORD_HEAD 16  /* count, why, used, pad: the ring record's bytes before the samples */

struct building {
    struct bpf_spin_lock lock;
    u32 current;  /* the half samples are appended to */
    u32 busy[2];  /* a half being written to the ring */
    u32 pad;
    struct datagram half[2];
};

static __always_inline struct assembly *assembly_of(void);
static __always_inline struct building *building_of(void);
static __always_inline u64 ring_room(void);
static __always_inline long output_datagram(struct datagram *d, u32 bytes, u64 flags);
#endif

/* Defined by the front end, after its maps. */
static __always_inline struct tap_config *config_of(u32 *ifindex);
static __always_inline struct tap_counts *counts_of(u32 *ifindex);
static __always_inline struct wire *scratch_of(void);
static __always_inline u64 epoch_offset(void);
static __always_inline struct record *reserve_sample(void);
static __always_inline u64 *wake_slot(u32 slot);
static __always_inline void submit_sample(struct record *r, u64 flags);

/* How to submit a sample of this many bytes: waking the agent if the bytes written pass a multiple of
 * WAKE_BYTES with it, or if the agent sleeps waiting for the next sample (WAKE_ASLEEP, which the
 * first sample to see it clears; two CPUs may both see it: one wake-up more). */
static __always_inline u64 ring_wake(u32 bytes)
{
    u64 *written = wake_slot(WAKE_WRITTEN);
    u64 *asleep = wake_slot(WAKE_ASLEEP);
    if (!written || !asleep)
        return BPF_RB_NO_WAKEUP;
    u64 before = __sync_fetch_and_add(written, bytes);
    if (*asleep) {
        *asleep = 0;
        return BPF_RB_FORCE_WAKEUP;
    }
    return (before + bytes) / WAKE_BYTES == before / WAKE_BYTES ? BPF_RB_NO_WAKEUP : BPF_RB_FORCE_WAKEUP;
}

/* v & mask in an instruction of its own: the compiler, knowing v is smaller already, would drop a
 * plain mask, and the verifier, which tracks less than the compiler, needs it to bound v. */
#define MASKED(v, mask) ({ u32 m_ = (v); asm volatile("%[x] &= " #mask : [x] "+r"(m_)); m_; })

/* A length for bpf_skb_load_bytes, which the verifier must see as at least 1: only where v >= 1. */
#define LOAD_LENGTH(v, mask) (MASKED((v) - 1, mask) + 1)

#define ETH_P_IP_ 0x0800
#define ETH_P_IPV6_ 0x86DD
#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80

static __always_inline u32 get16(u8 *h, u32 o)
{
    return (u32)h[o] << 8 | h[o + 1];
}

static __always_inline void put16(u8 *h, u32 o, u32 v)
{
    h[o] = v >> 8;
    h[o + 1] = v;
}

static __always_inline void put32(u8 *h, u32 o, u32 v)
{
    h[o] = v >> 24;
    h[o + 1] = v >> 16;
    h[o + 2] = v >> 8;
    h[o + 3] = v;
}

/* The headers of a sampled frame: where IP and the transport header start, what follows the
 * headers (hdrs, 0 when they do not parse within the bytes copied). */
struct parsed {
    u32 l3;
    u32 l4;
    u32 hdrs;
    u32 proto;
    u32 ipv4;
};

static __always_inline void parse(u8 *h, u32 n, int ethernet, struct parsed *p)
{
    u32 l3 = 0, ethertype = 0;
    p->hdrs = 0;
    if (ethernet) {
        if (n < 14)
            return;
        l3 = 14;
        ethertype = get16(h, 12);
        if ((ethertype == ETH_P_8021Q_ || ethertype == ETH_P_8021AD_) && n >= 18) {
            ethertype = get16(h, 16);
            l3 = 18;
            if ((ethertype == ETH_P_8021Q_) && n >= 22) {
                ethertype = get16(h, 20);
                l3 = 22;
            }
        }
    } else if (n > 0) {
        ethertype = h[0] >> 4 == 4 ? ETH_P_IP_ : h[0] >> 4 == 6 ? ETH_P_IPV6_ : 0;
    }
    u32 l4, proto;
    if (ethertype == ETH_P_IP_ && n >= l3 + 20) {
        l4 = l3 + (h[l3] & 0x0F) * 4;
        proto = h[l3 + 9];
        p->ipv4 = 1;
    } else if (ethertype == ETH_P_IPV6_ && n >= l3 + 40) {
        l4 = l3 + 40;
        proto = h[l3 + 6];
        p->ipv4 = 0;
    } else {
        return;
    }
    p->l3 = l3;
    p->l4 = l4;
    p->proto = proto;
    if (proto == 6 && n >= l4 + 20)
        p->hdrs = l4 + (h[l4 + 12] >> 4) * 4;
    else if (proto == 17 && n >= l4 + 8)
        p->hdrs = l4 + 8;
    if (p->hdrs > n)
        p->hdrs = 0;
}

/* Rewrite the copied headers as those of segment i: lengths, IPv4 identification and checksum,
 * TCP sequence number and the flags only the first or last segment carries. */
static __always_inline void segment_headers(u8 *h, struct parsed *p, u32 i, u32 last, u32 gso_size, u32 seg,
                                            u32 ip_id, u32 tcp_seq, u32 tcp_flags)
{
    u32 l3 = p->l3 & 0x1F, l4 = p->l4 & 0x7F;
    if (p->ipv4) {
        put16(h, l3 + 2, p->hdrs - l3 + seg);
        put16(h, l3 + 4, ip_id + i);
        if (l4 == l3 + 20) {  /* no options: the checksum is that of ten words */
            u32 sum = 0;
            put16(h, l3 + 10, 0);
            for (int k = 0; k < 20; k += 2)
                sum += get16(h, l3 + k);
            sum = (sum & 0xFFFF) + (sum >> 16);
            sum = (sum & 0xFFFF) + (sum >> 16);
            put16(h, l3 + 10, ~sum & 0xFFFF);
        }
    } else {
        put16(h, l3 + 4, p->hdrs - l4 + seg);
    }
    if (p->proto == 6) {
        put32(h, l4 + 4, tcp_seq + i * gso_size);
        u32 flags = tcp_flags;
        if (i != last)
            flags &= ~(TCP_FIN | TCP_PSH);
        if (i != 0)
            flags &= ~TCP_CWR;
        h[l4 + 13] = flags;
    } else if (p->proto == 17) {
        put16(h, l4 + 4, 8 + seg);
    }
}

/* What every sample of one packet shares, for sample_segment (called once, or by bpf_loop per sample). */
struct segments {
    struct __sk_buff *skb;
    struct tap_counts *cnt;
    struct wire *w;
    struct parsed p;
    u64 now;
    u32 first, rate, segments, n, vlan, len, fcs;
    u32 gso_size, payload, ip_id, tcp_seq, tcp_flags;
    u32 ifindex;
    u32 room;  /* > 0: the sample goes to the datagram being built (KERNEL_DATAGRAMS), of this room */
};

/* Write the sample in the CPU's scratch (of interface ifindex, the pool gap packets further) to the ring
 * as a record of its own, counted up to it and numbered only now, with its place in the ring reserved.
 * A SUBPROGRAM: the verifier walks it once, not once per path through the sample's making. */
SUBPROGRAM int ring_sample(u32 ifindex, u32 gap)
{
    struct tap_counts *cnt = counts_of(&ifindex);
    struct wire *w = scratch_of();
    if (!cnt || !w)
        return 0;
    struct record *r = reserve_sample();
    u64 pool = __sync_fetch_and_add(&cnt->pool, gap) + gap;
    if (!r) {
        __sync_fetch_and_add(&cnt->drops, 1);
        return 0;
    }
    __builtin_memcpy(r, w, __builtin_offsetof(struct record, pad));
    r->word[W_SEQUENCE] = WIRE32((u32)(__sync_fetch_and_add(&cnt->sequence, 1) + 1));
    r->word[W_POOL] = WIRE32((u32)pool);
    r->word[W_DROPS] = WIRE32((u32)cnt->drops);
    submit_sample(r, ring_wake(WIRE32(r->word[W_LENGTH]) + 8));  /* read back: the verifier need not track it */
    return 0;
}

#ifdef KERNEL_DATAGRAMS
/* Write half `which` of the datagram being built to the ring, then free it for samples.  A flush asked
 * for by the agent wakes nobody (the agent drains next) and counts for no WAKE_BYTES. */
static __always_inline void datagram_out(struct building *b, u32 which, u32 why, struct tap_counts *cnt)
{
    struct datagram *d = &b->half[which & 1];
    u32 used = d->used;
    if (used > DATAGRAM_ROOM_MAX + SAMPLE_BYTES_MAX)  /* never: for the verifier */
        used = 0;
    u32 bytes = DATAGRAM_RECORD_HEAD + used;
    d->why = why;
    u64 flags = cnt ? ring_wake(bytes) : BPF_RB_NO_WAKEUP;
    if (output_datagram(d, bytes, flags) < 0 && cnt)  /* never with RING_MARGIN free: its samples lost */
        __sync_fetch_and_add(&cnt->drops, d->count);
    bpf_spin_lock(&b->lock);
    d->count = 0;
    d->used = 0;
    b->busy[which & 1] = 0;
    bpf_spin_unlock(&b->lock);
}

/* Append the sample written in the CPU's scratch (bytes long, of interface ifindex, the pool gap packets
 * further) to the datagram being built, counted and numbered under the lock, so that samples lie in the
 * datagrams in the order of their numbers; the datagram it did not fit in (past room bytes) goes to the
 * ring.  For an agent asleep (WAKE_ASLEEP) the datagram goes at once.  A function of its own, which the
 * verifier walks once, not once per path through the sample's making. */
SUBPROGRAM int assemble(u32 ifindex, u32 gap, u32 bytes, u32 room)
{
    struct tap_counts *cnt = counts_of(&ifindex);
    if (!cnt)
        return 0;
    struct wire *w = scratch_of();
    struct building *b = building_of();
    u64 *asleep = wake_slot(WAKE_ASLEEP);
    if (!w || !b || !asleep) {  /* never (one-slot arrays): a drop, as past the half's room */
        __sync_fetch_and_add(&cnt->pool, gap);
        __sync_fetch_and_add(&cnt->drops, 1);
        return 0;
    }
    if (bytes > SAMPLE_BYTES_MAX)
        bytes = SAMPLE_BYTES_MAX;
    /* the ring of datagrams has room for any datagram that may be written out: checked outside the lock */
    u32 ring_ok = ring_room() >= RING_MARGIN;
    u32 out = 2, dropped = 0;
    bpf_spin_lock(&b->lock);
    u32 c = b->current & 1;
    struct datagram *d = &b->half[c];
    u32 at = d->used;
    if (d->count && at + bytes > room && ring_ok && !b->busy[c ^ 1]) {
        b->busy[c] = 1;
        out = c;
        c ^= 1;
        b->current = c;
        d = &b->half[c];
        at = 0;
    }
    /* Past room only while the datagram cannot go (the ring of datagrams nearly full, or the other half
     * still being written out: its CPU was held up): the agent cuts it at its samples' ends.  Past the
     * half's own room the sample is a drop, counted, not numbered: samples keep the order of their numbers. */
    if (at > DATAGRAM_ROOM_MAX) {
        dropped = 1;
        goto unlock;
    }
    u64 pool = __sync_fetch_and_add(&cnt->pool, gap) + gap;
    w->word[W_SEQUENCE] = WIRE32((u32)(__sync_fetch_and_add(&cnt->sequence, 1) + 1));
    w->word[W_POOL] = WIRE32((u32)pool);
    w->word[W_DROPS] = WIRE32((u32)cnt->drops);
    /* a constant length, the largest sample's: what passes this one's end lies past `used`, unsent */
    __builtin_memcpy(d->body + at, w, SAMPLE_BYTES_MAX);
    d->used = at + bytes;
    d->count += 1;
    if (out == 2 && *asleep && ring_ok && !b->busy[c ^ 1]) {
        b->busy[c] = 1;
        out = c;
        b->current = c ^ 1;
    }
unlock:
    bpf_spin_unlock(&b->lock);
    if (dropped) {
        __sync_fetch_and_add(&cnt->pool, gap);
        __sync_fetch_and_add(&cnt->drops, 1);
        return 0;
    }
    if (out < 2)
        datagram_out(b, out, out == c ? DATAGRAM_FLUSHED : DATAGRAM_FULL, cnt);
    return 0;
}
#endif

/* Write the sample of segment i (0 for a packet that is one segment) and hand it to the ring. */
static __always_inline void sample_segment(struct segments *l, u32 i)
{
    struct wire *w = l->w;
    u8 *h = w->header;
    u32 hlen = l->n, frame = l->len + l->vlan;
    if (l->segments > 1) {
        if (l->p.hdrs) {
            u32 hdrs = MASKED(l->p.hdrs, 0xFF);
            u32 seg = i == l->segments - 1 ? l->payload - i * l->gso_size : l->gso_size;
            frame = hdrs + seg;
            if (hlen > frame)
                hlen = frame;
            segment_headers(h, &l->p, i, l->segments - 1, l->gso_size, seg, l->ip_id, l->tcp_seq, l->tcp_flags);
            /* this segment's own payload bytes */
            if (i > 0 && hlen > hdrs &&
                bpf_skb_load_bytes(l->skb, hdrs - l->vlan + i * l->gso_size, h + hdrs, LOAD_LENGTH(hlen - hdrs, 0xFF)) < 0)
                hlen = hdrs;
        } else {
            frame = (l->len + l->segments - 1) / l->segments + l->vlan;
        }
    }
    if (hlen > HEADER_MAX)
        hlen = HEADER_MAX;
    hlen = MASKED(hlen, 0x1FF);
    u32 padded = MASKED((hlen + 3) & ~3, 0x1FC);
    h[hlen] = 0;  /* the padding; what lies past it is the timestamp, written next */
    h[hlen + 1] = 0;
    h[hlen + 2] = 0;
    w->word[W_LENGTH] = WIRE32(SFLOW_HEAD_BYTES - 8 + padded + SFLOW_TIMESTAMP_BYTES);
    w->word[W_HEADER_LENGTH] = WIRE32(16 + padded);
    w->word[W_FRAME_LENGTH] = WIRE32(frame + l->fcs);
    w->word[W_HEADER_BYTES] = WIRE32(hlen);
    u32 *ts = (u32 *)(h + padded);
    ts[0] = WIRE32(SFLOW_TIMESTAMP);
    ts[1] = WIRE32(8);
    ts[2] = WIRE32((u32)(l->now >> 32));
    ts[3] = WIRE32((u32)l->now);
    /* counted up to this segment and numbered only now, with its place in the ring reserved */
    u32 gap = i == l->first ? i + 1 : l->rate;
#ifdef KERNEL_DATAGRAMS
    if (l->room) {
        assemble(l->ifindex, gap, SFLOW_HEAD_BYTES + padded + SFLOW_TIMESTAMP_BYTES, l->room);
        return;
    }
#endif
    ring_sample(l->ifindex, gap);
}

static long segment_callback(u32 index, void *ctx)
{
    struct segments *l = ctx;
    sample_segment(l, l->first + index * l->rate);
    return 0;
}

static __always_inline int take(struct __sk_buff *skb, int egress)
{
    u32 ifindex = skb->ifindex;
    struct tap_config *cfg = config_of(&ifindex);
    if (!cfg)
        return TC_ACT_UNSPEC;
    if (cfg->loopback && egress)
        return TC_ACT_UNSPEC;
    struct tap_counts *cnt = counts_of(&ifindex);
    if (!cnt)
        return TC_ACT_UNSPEC;
    u32 segments = skb->gso_segs;
    if (segments == 0 || cfg->loopback)
        segments = 1;

    /* counted here, but for a sampled packet: as its samples are written */
    u32 rate = cfg->rate;
    u32 first = rate ? bpf_get_prandom_u32() % rate : segments;
    struct wire *w = first < segments ? scratch_of() : 0;
    if (!w) {
        __sync_fetch_and_add(&cnt->pool, segments);
        return TC_ACT_UNSPEC;
    }
    u8 *h = w->header;

    /* The frame's first bytes, with an 802.1Q tag the NIC took out put back after the MACs. */
    int ethernet = cfg->ethernet;
    u32 len = skb->len;
    u32 vlan = ethernet && skb->vlan_present ? 4 : 0;
    u32 limit = cfg->header_bytes;
    if (limit > HEADER_MAX)
        limit = HEADER_MAX;
    u32 n = len + vlan;
    if (n > limit)
        n = limit;
    if (vlan && n >= 16) {
        if (bpf_skb_load_bytes(skb, 0, h, 12) < 0)
            goto uncopied;
        u32 tpid = HOST16((u16)skb->vlan_proto);
        put16(h, 12, tpid ? tpid : ETH_P_8021Q_);
        put16(h, 14, skb->vlan_tci);
        if (n > 16 && bpf_skb_load_bytes(skb, 12, h + 16, LOAD_LENGTH(n - 16, 0xFF)) < 0)
            goto uncopied;
    } else {
        vlan = 0;
        if (n > 0 && bpf_skb_load_bytes(skb, 0, h, LOAD_LENGTH(n, 0x1FF)) < 0)
            n = 0;
    }

    u32 direction = egress ? DIRECTION_OUT : DIRECTION_IN;
    if (!egress && skb->pkt_type == PACKET_OTHERHOST)
        direction = DIRECTION_UNKNOWN;  /* not addressed to this host: seen in promiscuous mode */
    if (egress && cfg->check_source && n >= 12 &&
        (h[6] != cfg->mac[0] || h[7] != cfg->mac[1] || h[8] != cfg->mac[2] ||
         h[9] != cfg->mac[3] || h[10] != cfg->mac[4] || h[11] != cfg->mac[5]))
        direction = DIRECTION_UNKNOWN;  /* forwarded through this interface, not sent by the host */

    u32 protocol = ethernet ? SFLOW_HEADER_ETHERNET : n && h[0] >> 4 == 4 ? SFLOW_HEADER_IPV4 : SFLOW_HEADER_IPV6;
    u32 fcs = ethernet ? SFLOW_FCS_BYTES : 0;
    w->word[W_TAG] = WIRE32(SFLOW_FLOW_SAMPLE_EXPANDED);
    w->word[W_SEQUENCE] = 0;
    w->word[W_SOURCE_CLASS] = 0;
    w->word[W_SOURCE_INDEX] = WIRE32(ifindex);
    w->word[W_RATE] = WIRE32(rate);
    w->word[W_POOL] = 0;
    w->word[W_DROPS] = 0;
    w->word[W_INPUT_FORMAT] = 0;
    w->word[W_INPUT] = WIRE32(direction == DIRECTION_IN ? ifindex : direction == DIRECTION_OUT ? SFLOW_INTERNAL_PORT : 0);
    w->word[W_OUTPUT_FORMAT] = 0;
    w->word[W_OUTPUT] = WIRE32(direction == DIRECTION_OUT ? ifindex : direction == DIRECTION_IN ? SFLOW_INTERNAL_PORT : 0);
    w->word[W_RECORDS] = WIRE32(2);
    w->word[W_HEADER_TAG] = WIRE32(SFLOW_SAMPLED_HEADER);
    w->word[W_PROTOCOL] = WIRE32(protocol);
    w->word[W_STRIPPED] = WIRE32(fcs);

    struct segments l = {.skb = skb, .ifindex = ifindex, .cnt = cnt, .w = w, .first = first, .rate = rate, .segments = segments,
                         .n = n, .vlan = vlan, .len = len, .fcs = fcs};
#ifdef KERNEL_DATAGRAMS
    struct assembly *a = assembly_of();
    if (a && a->on)
        l.room = a->room < DATAGRAM_ROOM_MAX ? a->room : DATAGRAM_ROOM_MAX;
#endif
    l.now = bpf_ktime_get_ns() + epoch_offset();
    if (segments == 1) {
        sample_segment(&l, first);
        return TC_ACT_UNSPEC;
    }
    parse(h, n, ethernet, &l.p);
    if (l.p.hdrs) {
        u32 l3 = l.p.l3 & 0x1F, l4 = l.p.l4 & 0x7F;
        l.payload = len + vlan - l.p.hdrs;
        l.gso_size = skb->gso_size;
        if (l.gso_size == 0 || (segments - 1) * l.gso_size >= l.payload)
            l.gso_size = (l.payload + segments - 1) / segments;
        l.ip_id = l.p.ipv4 ? get16(h, l3 + 4) : 0;
        if (l.p.proto == 6) {
            l.tcp_seq = (u32)get16(h, l4 + 4) << 16 | get16(h, l4 + 6);
            l.tcp_flags = h[l4 + 13];
        }
    }
    u32 wanted = (segments - first + rate - 1) / rate;
    u32 taken = wanted < SEGMENT_SAMPLES_MAX ? wanted : SEGMENT_SAMPLES_MAX;
#ifdef NO_BPF_LOOP
    for (u32 c = 0; c < SEGMENT_SAMPLES_MAX && c < taken; c++)
        segment_callback(c, &l);
#else
    bpf_loop(taken, segment_callback, &l, 0);
#endif
    /* a packet standing for more segments than this takes samples of: the rest are lost samples */
    if (wanted > taken)
        __sync_fetch_and_add(&cnt->drops, wanted - taken);
    u32 counted = first + (taken - 1) * rate + 1;  /* up to the last sample's segment */
    if (segments > counted)
        __sync_fetch_and_add(&cnt->pool, segments - counted);
    return TC_ACT_UNSPEC;
uncopied:
    __sync_fetch_and_add(&cnt->pool, segments);
    return TC_ACT_UNSPEC;
}

PROGRAM(hsflowd_ingress)
{
    return take(skb, 0);
}

PROGRAM(hsflowd_egress)
{
    return take(skb, 1);
}

#ifdef KERNEL_DATAGRAMS
/* Run by the agent (BPF_PROG_TEST_RUN on an empty frame) in its quiet-period drain: the datagram being
 * built goes to the ring now, unless the other half is still being written out (then at the next). */
PROGRAM(hsflowd_flush)
{
    struct building *b = building_of();
    if (!b)
        return TC_ACT_UNSPEC;
    u32 out = 2;
    u32 ring_ok = ring_room() >= RING_MARGIN;
    bpf_spin_lock(&b->lock);
    u32 c = b->current & 1;
    if (b->half[c].count && ring_ok && !b->busy[c ^ 1]) {
        b->busy[c] = 1;
        out = c;
        b->current = c ^ 1;
    }
    bpf_spin_unlock(&b->lock);
    if (out < 2)
        datagram_out(b, out, DATAGRAM_FLUSHED, 0);
    return TC_ACT_UNSPEC;
}
#endif
