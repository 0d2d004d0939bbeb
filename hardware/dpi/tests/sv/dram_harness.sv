// Self-checking Verilator harness for SpAttenDram.sv (driven by test_dram_sv.py).
//
// Two channels; each issues NUM_REQ read requests with random valid gaps and random
// response back-pressure, and checks every response, in request order, against the
// memory image's pattern: byte a = (a*131 + (a>>8)*7 + 3) mod 256 below IMAGE_BYTES,
// zero above. +bad_addr makes channel 0 issue an unaligned address (the DPI must stop
// the simulation with an error).
module dram_harness;
  localparam int NUM_CHANNELS = 2;
  localparam int BURST_BYTES  = 32;
  localparam int ADDR_BITS    = 32;
  localparam int DATA_BITS    = BURST_BYTES * 8;
  localparam int NUM_REQ      = 64;
  localparam int IMAGE_BYTES  = 1 << 16;

  logic clock = 1'b0;
  logic reset = 1'b1;
  always #1 clock = ~clock;

  function automatic logic [7:0] pattern(input longint unsigned a);
    if (a >= IMAGE_BYTES) return 8'd0;
    return 8'((a * 131 + (a >> 8) * 7 + 3) & 255);
  endfunction

  // Address of request i of channel ch: scattered over rows and banks, some beyond the image.
  function automatic logic [ADDR_BITS-1:0] address(input int ch, input int i);
    longint unsigned local_burst = (longint'(i) * 7919) % 4096;
    if (i % 16 == 15) local_burst = local_burst + 100000;  // beyond the image: zeros
    return ADDR_BITS'((local_burst * NUM_CHANNELS + ch) * BURST_BYTES);
  endfunction

  int errors = 0;
  int finished_channels = 0;
  bit bad_addr;
  initial bad_addr = $test$plusargs("bad_addr");

  for (genvar ch = 0; ch < NUM_CHANNELS; ch++) begin : lane
    logic                 req_valid = 1'b0;
    logic                 req_ready;
    logic [ADDR_BITS-1:0] req_addr = '0;
    logic                 resp_valid;
    logic                 resp_ready = 1'b0;
    logic [DATA_BITS-1:0] resp_data;
    int sent = 0;
    int got = 0;
    int unsigned lfsr = 32'h1234_5678 + ch;

    SpAttenDram #(
      .CHANNEL(ch), .NUM_CHANNELS(NUM_CHANNELS), .BURST_BYTES(BURST_BYTES), .ADDR_BITS(ADDR_BITS)
    ) dut (
      .clock(clock), .reset(reset),
      .req_valid(req_valid), .req_ready(req_ready), .req_addr(req_addr),
      .resp_valid(resp_valid), .resp_ready(resp_ready), .resp_data(resp_data)
    );

    always @(posedge clock) begin
      lfsr = {lfsr[30:0], lfsr[31] ^ lfsr[21] ^ lfsr[1] ^ lfsr[0]};
      if (!reset) begin
        if (resp_valid && resp_ready) begin
          longint unsigned a = longint'(address(ch, got));
          for (int b = 0; b < BURST_BYTES; b++) begin
            if (resp_data[8*b +: 8] !== pattern(a + b)) begin
              $display("MISMATCH channel %0d response %0d (address 0x%0h) byte %0d: expected 0x%02h, got 0x%02h",
                       ch, got, a, b, pattern(a + b), resp_data[8*b +: 8]);
              errors++;
            end
          end
          got++;
          if (got == NUM_REQ) finished_channels++;
        end
        if (req_valid && req_ready) sent++;
        // Next cycle's request: hold it until taken, else start one 3 times in 4.
        if (!(req_valid && !req_ready)) begin
          int nxt = sent;
          req_valid <= nxt < NUM_REQ && lfsr[1:0] != 2'b00;
          req_addr  <= (bad_addr && ch == 0 && nxt == 5) ? address(ch, nxt) + 4 : address(ch, nxt);
        end
        resp_ready <= lfsr[3:2] != 2'b00;
      end
    end
  end

  initial begin
    repeat (5) @(posedge clock);
    reset <= 1'b0;
    fork
      begin
        wait (finished_channels == NUM_CHANNELS);
      end
      begin
        repeat (20000) @(posedge clock);
        $display("TIMEOUT: channels finished %0d of %0d", finished_channels, NUM_CHANNELS);
        errors++;
      end
    join_any
    repeat (2) @(posedge clock);
    if (errors != 0) $fatal(1, "HARNESS FAIL: %0d errors", errors);
    $display("HARNESS PASS: %0d responses checked", NUM_CHANNELS * NUM_REQ);
    $finish;
  end
endmodule
