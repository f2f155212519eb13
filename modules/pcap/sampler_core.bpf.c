/* The sampler (sampler.bpf.h) as a BPF object: compiled once at build time by clang
 * (setup.py, `clang -target bpfel|bpfeb -mcpu=v3 -O2 -g`: v3 for atomic fetch-and-add, kernel 5.12 on) with the UAPI headers of linux-libc-dev
 * and libbpf-dev's bpf_helpers.h, and loaded at run time through libbpf (ebpf_core.py),
 * which sets the rings' sizes before loading.  -g gives the object its BTF: libbpf needs
 * it for the maps declared below (the spin lock in building's value above all), and the
 * verifier's messages name source lines.  KERNEL_DATAGRAMS: datagrams built here (sampler.bpf.h). */
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
#define KERNEL_DATAGRAMS
#define SUBPROGRAM __attribute__((noinline))  /* a global function: verified once, on its own */
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

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 19);  /* replaced by ebpf.DATAGRAM_RING_BYTES before loading */
} datagrams SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct assembly);
} assembly SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct building);
} building SEC(".maps");

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

static __always_inline struct assembly *assembly_of(void)
{
    u32 zero = 0;
    return bpf_map_lookup_elem(&assembly, &zero);
}

static __always_inline struct building *building_of(void)
{
    u32 zero = 0;
    return bpf_map_lookup_elem(&building, &zero);
}

static __always_inline u64 ring_room(void)
{
    return bpf_ringbuf_query(&datagrams, BPF_RB_RING_SIZE) - bpf_ringbuf_query(&datagrams, BPF_RB_AVAIL_DATA);
}

static __always_inline long output_datagram(struct datagram *d, u32 bytes, u64 flags)
{
    return bpf_ringbuf_output(&datagrams, d, bytes, flags);
}

char LICENSE[] SEC("license") = "GPL";
