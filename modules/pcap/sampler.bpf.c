/* The sampler (sampler.bpf.h) for bcc, which compiles it at start-up against the running
 * kernel's headers (ebpf_build.py); HEADER_MAX and RING_PAGES come from ebpf.py.  bcc
 * reaches maps through its own method syntax, which it rewrites only outside macros. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/if_packet.h>

#define PROGRAM(name) int name(struct __sk_buff *skb)
#define SUBPROGRAM static __always_inline  /* bcc: inlined */
#include "sampler.bpf.h"

BPF_HASH(config, u32, struct tap_config, 4096);
BPF_HASH(counts, u32, struct tap_counts, 4096);
BPF_RINGBUF_OUTPUT(samples, RING_PAGES);
BPF_PERCPU_ARRAY(scratch, struct wire, 1);
BPF_ARRAY(clock, u64, 1);
BPF_ARRAY(wake, u64, 2);

static __always_inline struct tap_config *config_of(u32 *ifindex)
{
    return config.lookup(ifindex);
}

static __always_inline struct tap_counts *counts_of(u32 *ifindex)
{
    return counts.lookup(ifindex);
}

static __always_inline struct wire *scratch_of(void)
{
    u32 zero = 0;
    return scratch.lookup(&zero);
}

static __always_inline u64 epoch_offset(void)
{
    u32 zero = 0;
    u64 *offset = clock.lookup(&zero);
    return offset ? *offset : 0;
}

static __always_inline struct record *reserve_sample(void)
{
    return samples.ringbuf_reserve(sizeof(struct record));
}

static __always_inline u64 *wake_slot(u32 slot)
{
    return wake.lookup(&slot);
}

static __always_inline void submit_sample(struct record *r, u64 flags)
{
    samples.ringbuf_submit(r, flags);
}
