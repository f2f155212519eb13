/* hsflowd-py packet sampler: a tc (clsact) classifier on the ingress and egress of each
 * sampled interface.  This file is the program; it is built two ways, which differ only in
 * how maps are declared and reached:
 *
 *   sampler_core.bpf.c  compiled once at build time by clang into a BPF object that libbpf
 *                       loads at run time (ebpf_core.py): no compiler, no kernel headers;
 *   sampler.bpf.c       compiled at start-up by bcc against the running kernel's headers
 *                       (ebpf_build.py), the path for hosts without libbpf.
 *
 * The front end defines PROGRAM(name) before including this file, then the maps and the
 * four accessors declared below.
 *
 * Per packet: count it (per CPU, per interface and direction: the true sample pool),
 * draw a random number, and 1 time in N copy the first header_bytes bytes with the
 * packet's length, direction, interface and time into a BPF ring buffer.  A reservation
 * the full ring refuses is counted as a drop.  Samples are submitted without waking the
 * reader (BPF_RB_NO_WAKEUP): the agent drains the ring on a timer, which bounds its
 * wake-ups whatever the packet rate.
 *
 * One packet in the kernel may stand for several on the wire (GSO on the way out, GRO on
 * the way in: skb->gso_segs).  It counts as that many packets in the pool, and is sampled
 * as that many draws would sample it: `copies` is segments / N plus one more with
 * probability (segments % N) / N.  User space sends that many samples of it, each with the
 * average wire length of its segments.
 *
 * The program reads only struct __sk_buff, the context's stable ABI that the verifier
 * rewrites for each kernel, so the object needs no relocation against kernel types.
 *
 * The program never changes a packet and returns TC_ACT_UNSPEC, so that the filters after
 * it on the same hook still run.
 */

#ifndef HEADER_MAX
#define HEADER_MAX 256
#endif

#define DIRECTION_UNKNOWN 0
#define DIRECTION_IN 1
#define DIRECTION_OUT 2

struct tap_config {
    u32 rate;           /* 1-in-N */
    u32 header_bytes;   /* bytes of each sampled packet to copy */
    u8 mac[6];          /* the interface's own MAC: a sent frame carries it as its source */
    u8 check_source;    /* compare the source MAC of egress frames with mac */
    u8 pad;
};

struct tap_counts {
    u64 packets[2];     /* wire packets seen: [0] ingress, [1] egress */
    u64 drops;          /* samples lost because the ring was full */
};

struct sample {
    u64 ktime_ns;       /* CLOCK_MONOTONIC; user space adds the offset to the epoch */
    u32 ifindex;
    u32 skb_len;
    u32 segments;
    u16 header_length;
    u16 copies;
    u8 direction;
    u8 vlan_present;
    u16 vlan_tci;
    u16 vlan_proto;
    u16 pad;
    u8 header[HEADER_MAX];
};

/* Defined by the front end, after its maps. */
static __always_inline struct tap_config *config_of(u32 *ifindex);
static __always_inline struct tap_counts *counts_of(u32 *ifindex);
static __always_inline struct sample *reserve_sample(void);
static __always_inline void submit_sample(struct sample *s);

static __always_inline int take(struct __sk_buff *skb, int egress)
{
    u32 ifindex = skb->ifindex;
    struct tap_config *cfg = config_of(&ifindex);
    if (!cfg)
        return TC_ACT_UNSPEC;
    struct tap_counts *cnt = counts_of(&ifindex);
    if (!cnt)
        return TC_ACT_UNSPEC;
    u32 segments = skb->gso_segs;
    if (segments == 0)
        segments = 1;
    cnt->packets[egress ? 1 : 0] += segments;

    u32 rate = cfg->rate;
    if (rate == 0)
        return TC_ACT_UNSPEC;
    u32 copies = segments / rate;
    if (bpf_get_prandom_u32() % rate < segments % rate)
        copies++;
    if (copies == 0)
        return TC_ACT_UNSPEC;

    struct sample *s = reserve_sample();
    if (!s) {
        cnt->drops += copies;
        return TC_ACT_UNSPEC;
    }
    u32 n = skb->len;
    if (n > cfg->header_bytes)
        n = cfg->header_bytes;
    if (n > HEADER_MAX)
        n = HEADER_MAX;
    /* bpf_skb_load_bytes needs a length the verifier can prove non-zero and bounded */
    if (n < 1 || bpf_skb_load_bytes(skb, 0, s->header, n & 0x1ff) < 0)
        n = 0;

    u8 direction = egress ? DIRECTION_OUT : DIRECTION_IN;
    if (!egress && skb->pkt_type == PACKET_OTHERHOST)
        direction = DIRECTION_UNKNOWN;  /* not addressed to this host: seen in promiscuous mode */
    if (egress && cfg->check_source && n >= 12 &&
        (s->header[6] != cfg->mac[0] || s->header[7] != cfg->mac[1] || s->header[8] != cfg->mac[2] ||
         s->header[9] != cfg->mac[3] || s->header[10] != cfg->mac[4] || s->header[11] != cfg->mac[5]))
        direction = DIRECTION_UNKNOWN;  /* forwarded through this interface, not sent by the host */

    s->ktime_ns = bpf_ktime_get_ns();
    s->ifindex = ifindex;
    s->skb_len = skb->len;
    s->segments = segments;
    s->header_length = n;
    s->copies = copies > 0xffff ? 0xffff : copies;
    s->direction = direction;
    s->vlan_present = skb->vlan_present;
    s->vlan_tci = skb->vlan_tci;
    s->vlan_proto = skb->vlan_proto;
    s->pad = 0;
    submit_sample(s);
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
