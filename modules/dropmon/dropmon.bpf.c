/* hsflowd-py drop monitor: a raw tracepoint program on skb:kfree_skb, the kernel's one call for a
 * packet it drops (consumed packets go through consume_skb, a different tracepoint).
 *
 * Compiled once at build time by clang (setup.py, with -mcpu=v3 for compare-and-swap) and loaded
 * through libbpf (hsflowd_py/bpf_loader.py).  The few struct sk_buff and net_device fields it
 * reads are declared below with preserve_access_index: libbpf relocates their offsets against the
 * running kernel's BTF (/sys/kernel/btf/vmlinux) at load time, so no kernel headers are needed
 * on the host and the object fits any kernel with BTF.
 *
 * Per dropped packet: skip the reasons user space marked hidden (NOT_DROPPED_YET, CONSUMED, the
 * `hide` regex's), take a token from a bucket of `limit` per second shared by all CPUs (GCRA: one
 * 64-bit "theoretical arrival time" moved by compare-and-swap, so no lock), and only then copy the
 * packet's first bytes with the drop's reason, location and interfaces into a BPF ring buffer,
 * submitted without waking the reader: user space drains on a timer.  Whatever the drop rate,
 * at most `limit` records a second reach user space; the rest are counted per CPU.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;

#define HEADER_MAX 256
#define NO_HEADER 0xffff    /* an unset mac_header */

struct net_device {
    int ifindex;
} __attribute__((preserve_access_index));

struct sk_buff {
    struct net_device *dev;
    unsigned int len;
    unsigned int data_len;
    int skb_iif;
    __be16 protocol;
    u16 network_header;
    u16 mac_header;
    unsigned char *head;
    unsigned char *data;
} __attribute__((preserve_access_index));

struct dropmon_config {
    u64 interval_ns;    /* 1 s / limit: one token per interval */
    u64 tolerance_ns;   /* (burst - 1) * interval */
    u32 header_bytes;   /* bytes of each dropped packet to copy */
    u32 pad;
};

struct dropmon_counts {
    u64 seen;           /* drops with a reason not hidden */
    u64 hidden;         /* drops with a hidden reason (never reported) */
    u64 suppressed;     /* over the rate limit */
    u64 lost;           /* the ring was full */
};

struct drop {
    u64 ktime_ns;       /* CLOCK_MONOTONIC */
    u64 location;       /* the return address in the function that freed the packet */
    u32 reason;         /* enum skb_drop_reason */
    u32 iif;            /* skb->skb_iif: where it came in, 0 when sent by this host */
    u32 ifindex;        /* skb->dev->ifindex, 0 without a device */
    u32 frame_length;   /* bytes from the copied header's start to the packet's end */
    u16 protocol;       /* skb->protocol, network byte order */
    u16 header_length;
    u8 mac;             /* the header starts at the MAC header */
    u8 pad[3];
    u8 header[HEADER_MAX];
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct dropmon_config);
} config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} bucket SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, u32);
    __type(value, u8);
} hidden SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct dropmon_counts);
} counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 18);  /* replaced by the loader */
} drops SEC(".maps");

/* One token of the bucket, or 0 when it is empty.  A compare-and-swap lost to another CPU is
 * retried a few times, then counted as over the limit: never a loop the verifier cannot bound. */
static __always_inline int take_token(struct dropmon_config *cfg, u64 now)
{
    u32 zero = 0;
    u64 *tat = bpf_map_lookup_elem(&bucket, &zero);
    if (!tat)
        return 0;
    for (int i = 0; i < 4; i++) {
        u64 seen = *tat;
        u64 base = seen > now ? seen : now;
        if (base - now > cfg->tolerance_ns)
            return 0;
        if (__sync_val_compare_and_swap(tat, seen, base + cfg->interval_ns) == seen)
            return 1;
    }
    return 0;
}

SEC("raw_tp/kfree_skb")
int hsflowd_kfree_skb(struct bpf_raw_tracepoint_args *ctx)
{
    struct sk_buff *skb = (struct sk_buff *)ctx->args[0];
    u32 reason = (u32)ctx->args[2];
    u32 zero = 0;
    struct dropmon_counts *cnt = bpf_map_lookup_elem(&counts, &zero);
    struct dropmon_config *cfg = bpf_map_lookup_elem(&config, &zero);
    if (!cnt || !cfg)
        return 0;
    if (bpf_map_lookup_elem(&hidden, &reason)) {
        cnt->hidden++;
        return 0;
    }
    cnt->seen++;
    u64 now = bpf_ktime_get_ns();
    if (!take_token(cfg, now)) {
        cnt->suppressed++;
        return 0;
    }
    struct drop *d = bpf_ringbuf_reserve(&drops, sizeof(struct drop), 0);
    if (!d) {
        cnt->lost++;
        return 0;
    }
    unsigned char *head = BPF_CORE_READ(skb, head);
    unsigned char *data = BPF_CORE_READ(skb, data);
    u16 mac = BPF_CORE_READ(skb, mac_header);
    u16 network = BPF_CORE_READ(skb, network_header);
    u32 len = BPF_CORE_READ(skb, len);
    u32 linear = len - BPF_CORE_READ(skb, data_len);
    u8 has_mac = mac != NO_HEADER && mac < network;
    long start = has_mac ? mac : network;
    long offset = data - head;              /* where skb->data is, from head */
    long available = offset + linear - start;
    u32 n = 0;
    if (start <= offset + (long)linear && available > 0) {
        n = available < cfg->header_bytes ? available : cfg->header_bytes;
        if (n > HEADER_MAX)
            n = HEADER_MAX;
        if (bpf_probe_read_kernel(d->header, n, head + start) < 0)
            n = 0;
    }
    d->ktime_ns = now;
    d->location = ctx->args[1];
    d->reason = reason;
    d->iif = BPF_CORE_READ(skb, skb_iif);
    d->ifindex = BPF_CORE_READ(skb, dev, ifindex);
    d->frame_length = (long)len + offset - start > 0 ? (long)len + offset - start : len;
    d->protocol = BPF_CORE_READ(skb, protocol);
    d->header_length = n;
    d->mac = has_mac;
    d->pad[0] = d->pad[1] = d->pad[2] = 0;
    bpf_ringbuf_submit(d, BPF_RB_NO_WAKEUP);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
