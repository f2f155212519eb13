/* The sampler (sampler.bpf.h) as a BPF object: compiled once at build time by clang
 * (setup.py, `clang -target bpfel|bpfeb -mcpu=v3 -O2 -g`: v3 for atomic fetch-and-add, kernel 5.12 on) with the UAPI headers of linux-libc-dev
 * and libbpf-dev's bpf_helpers.h, and loaded at run time through libbpf (ebpf_core.py),
 * which sets the ring's size before loading.  -g gives the object its BTF: libbpf needs
 * it for the maps declared below, and the verifier's messages name source lines. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_packet.h>
#include <bpf/bpf_helpers.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;

#define PROGRAM(name) SEC("tc") int name(struct __sk_buff *skb)
#include "sampler.bpf.h"

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, u32);
    __type(value, struct tap_config);
} config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, u32);
    __type(value, struct tap_counts);
} counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 22);  /* replaced by ebpf.RING_BYTES before loading */
} samples SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct wire);
} scratch SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} clock SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 2);
    __type(key, u32);
    __type(value, u64);
} wake SEC(".maps");

static __always_inline struct tap_config *config_of(u32 *ifindex)
{
    return bpf_map_lookup_elem(&config, ifindex);
}

static __always_inline struct tap_counts *counts_of(u32 *ifindex)
{
    return bpf_map_lookup_elem(&counts, ifindex);
}

static __always_inline struct wire *scratch_of(void)
{
    u32 zero = 0;
    return bpf_map_lookup_elem(&scratch, &zero);
}

static __always_inline u64 epoch_offset(void)
{
    u32 zero = 0;
    u64 *offset = bpf_map_lookup_elem(&clock, &zero);
    return offset ? *offset : 0;
}

static __always_inline struct record *reserve_sample(void)
{
    return bpf_ringbuf_reserve(&samples, sizeof(struct record), 0);
}

static __always_inline u64 *wake_slot(u32 slot)
{
    return bpf_map_lookup_elem(&wake, &slot);
}

static __always_inline void submit_sample(struct record *r, u64 flags)
{
    bpf_ringbuf_submit(r, flags);
}

char LICENSE[] SEC("license") = "GPL";
