// One DRAM channel of the SpAtten accelerator, simulated in C++ through DPI-C
// (hardware/dpi/, see README.md there). One instance per channel.
//
// Ports follow SPEC.md section 6: a read request stream (valid/ready/addr, one
// burst-aligned burst per request, the address belonging to this channel) and a
// response stream (valid/ready/data, byte 0 in bits [7:0]) in request order.
// All outputs are registered. Run-time options are plusargs read by the C++ side:
// +dram_backend=builtin|ramulator2|ideal +dram_config=<yaml> +dram_image=<file>
// +dram_stats=<json> +dram_trace=<file> +clock_mhz=<MHz> +ideal_latency=<cycles>
// +dram_port_depth=<n> +dram_quiet.
module SpAttenDram #(
  parameter int CHANNEL      = 0,
  parameter int NUM_CHANNELS = 1,
  parameter int BURST_BYTES  = 32,
  parameter int ADDR_BITS    = 32,
  parameter int DATA_BITS    = BURST_BYTES * 8
) (
  input  logic                 clock,
  input  logic                 reset,
  input  logic                 req_valid,
  output logic                 req_ready,
  input  logic [ADDR_BITS-1:0] req_addr,
  output logic                 resp_valid,
  input  logic                 resp_ready,
  output logic [DATA_BITS-1:0] resp_data
);
  import "DPI-C" function chandle spatten_dram_init(
    input int channel, input int num_channels, input int burst_bytes, input int addr_bits);
  import "DPI-C" function int spatten_dram_tick(
    input  chandle              handle,
    input  bit                  reset,
    input  bit                  req_valid,
    input  longint unsigned     req_addr,
    input  bit                  resp_ready,
    output bit                  req_ready,
    output bit                  resp_valid,
    output bit [DATA_BITS-1:0]  resp_data);
  import "DPI-C" function void spatten_dram_finish(input chandle handle);

  chandle handle;
  logic                 req_ready_q  = 1'b0;
  logic                 resp_valid_q = 1'b0;
  logic [DATA_BITS-1:0] resp_data_q  = '0;

  assign req_ready  = req_ready_q;
  assign resp_valid = resp_valid_q;
  assign resp_data  = resp_data_q;

  initial begin
    if (DATA_BITS != BURST_BYTES * 8) $fatal(1, "SpAttenDram: DATA_BITS must be BURST_BYTES * 8");
    handle = spatten_dram_init(CHANNEL, NUM_CHANNELS, BURST_BYTES, ADDR_BITS);
    if (handle == null) $fatal(1, "SpAttenDram channel %0d: DPI init failed (see the message above)", CHANNEL);
  end

  always_ff @(posedge clock) begin : tick
    bit                 rdy;
    bit                 vld;
    bit [DATA_BITS-1:0] data;
    int                 rc;
    rc = spatten_dram_tick(handle, reset, req_valid, 64'(req_addr), resp_ready, rdy, vld, data);
    if (rc != 0) $fatal(1, "SpAttenDram channel %0d: DPI error (see the message above)", CHANNEL);
    req_ready_q  <= rdy;
    resp_valid_q <= vld;
    resp_data_q  <= data;
  end

  final spatten_dram_finish(handle);
endmodule
