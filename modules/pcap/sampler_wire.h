/* Generated from hsflowd_py/sflow/records.py by modules/pcap/wire.py: do not edit.
 * python -m hsflowd_py.modules.pcap.wire > modules/pcap/sampler_wire.h */
#define SFLOW_FLOW_SAMPLE_EXPANDED 3
#define SFLOW_SAMPLED_HEADER 1
#define SFLOW_TIMESTAMP 1043
#define SFLOW_INTERNAL_PORT 1073741823
#define SFLOW_HEADER_ETHERNET 1
#define SFLOW_HEADER_IPV4 11
#define SFLOW_HEADER_IPV6 12
#define SFLOW_HEAD_BYTES 76
#define SFLOW_TIMESTAMP_BYTES 16
#define SFLOW_FCS_BYTES 4
