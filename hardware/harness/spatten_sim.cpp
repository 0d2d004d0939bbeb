// Native Verilator harness of SpAttenTop: streams a command file into the accelerator,
// collects its responses, and records when each command entered and each response left.
//
//   VSpAttenTop --commands cmds.bin --responses resp.bin --log cmds.csv
//               [--max-idle N] [--progress-every N] [--name LABEL] [--stall-seed S --stall-percent P]
//               [--waves FILE.vcd]   (a simulator built with --trace: every signal, every cycle)
//               +dram_backend=builtin +dram_config=... +dram_image=... +dram_stats=...
//
// Stream files: 16-byte records {uint64 data, uint64 flags (bit 0 = last)}, little-endian
// (spatten/contract/commands.py write_stream/read_stream). Plusargs go to the DPI DRAM model.
// The log has one line per command: index, opcode, first-word cycle, response-last cycle,
// response words. Per-cycle controller-state counts go to <log>.states (unit,state,cycles;
// unit front, back or resp: the two pipeline stages of AttentionController and the back end's responder;
// unit keyRowsWait, state 1: cycles the front end's key pass 1 waited for K MSB rows not yet filled).
// Exit status: 0 when every command got its response; 2 on bad arguments or files;
// 3 when the accelerator stops making progress (the message names the stalled stage).
//
// Streaming mode, for a host that feeds requests as they come (spatten/sim/stream.py):
//
//   VSpAttenTop --stream [--max-idle N] +dram_backend=... [+dram_image=...]
//
// reads one command a line from stdin and answers on stdout (hex numbers, no 0x):
//   W <addr> <bytes as hex pairs>   write bytes into the DRAM memory image (no answer)
//   P <word0> <word1> ...           queue one command packet (last on its final word)
//   R                               run until every queued packet is answered; answers
//                                   "A <start_cycle> <end_cycle> <word0> <word1> ..." per
//                                   packet in order (cycles decimal), then "D <cycle>"
//   Q (or end of input)             finish (DRAM statistics to +dram_stats), "Q <cycle>"
// Simulated time stands still while the host thinks: cycles pass only inside R.
// A malformed line exits with status 2, a stalled accelerator with 3 (message on stderr).

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "VSpAttenTop.h"
#include "verilated.h"

// In hardware/dpi/spatten_dram_dpi.cc: write bytes into the DRAM memory (0 on success).
extern "C" int spatten_dram_host_write(uint64_t addr, const uint8_t* data, uint64_t len);
#if VM_TRACE
#include "verilated_vcd_c.h"
#endif

namespace {

struct Record {
  uint64_t data;
  uint64_t flags;
};

[[noreturn]] void fail(int code, const std::string& msg) {
  std::fprintf(stderr, "spatten_sim: error: %s\n", msg.c_str());
  std::exit(code);
}

std::vector<Record> readStream(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail(2, "cannot open command file " + path);
  std::vector<Record> out;
  Record r;
  while (std::fread(&r, sizeof r, 1, f) == 1) out.push_back(r);
  bool trailing = !std::feof(f) || std::ftell(f) % 16 != 0;
  std::fclose(f);
  if (trailing) fail(2, path + ": size is not a multiple of 16 bytes (records of {data, flags})");
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i].flags & ~uint64_t{1}) fail(2, path + ": record " + std::to_string(i) + " has flags other than bit 0");
  if (!out.empty() && !(out.back().flags & 1)) fail(2, path + ": the last record does not end a packet");
  return out;
}

void writeAtomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(2, "cannot write " + tmp);
  if (std::fwrite(content.data(), 1, content.size(), f) != content.size()) fail(2, "short write to " + tmp);
  std::fclose(f);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail(2, "cannot rename " + tmp + " to " + path);
}

struct Options {
  bool stream = false;
  std::string commands, responses, log, name = "sim", waves;
  uint64_t maxIdle = 200000;
  uint64_t progressEvery = 0;
  uint32_t stallSeed = 0;
  unsigned stallPercent = 0;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) fail(2, "option " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--stream") o.stream = true;
    else if (a == "--commands") o.commands = next();
    else if (a == "--responses") o.responses = next();
    else if (a == "--log") o.log = next();
    else if (a == "--name") o.name = next();
    else if (a == "--max-idle") o.maxIdle = std::stoull(next());
    else if (a == "--progress-every") o.progressEvery = std::stoull(next());
    else if (a == "--stall-seed") o.stallSeed = static_cast<uint32_t>(std::stoul(next()));
    else if (a == "--stall-percent") o.stallPercent = static_cast<unsigned>(std::stoul(next()));
    else if (a == "--waves") o.waves = next();
    else if (!a.empty() && a[0] == '+') continue;  // plusargs for the DPI model
    else fail(2, "unknown option " + a);
  }
  if (!o.stream && (o.commands.empty() || o.responses.empty() || o.log.empty()))
    fail(2, "usage: VSpAttenTop --commands FILE --responses FILE --log FILE [+plusargs] | --stream [+plusargs]");
  if (o.stallPercent > 100) fail(2, "--stall-percent must be 0..100");
  return o;
}

uint64_t parseHex(const std::string& tok, size_t line) {
  if (tok.empty() || tok.size() > 16 || tok.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
    fail(2, "stream line " + std::to_string(line) + ": '" + tok + "' is not a hex number of at most 64 bits");
  return std::stoull(tok, nullptr, 16);
}

std::vector<std::string> splitWords(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\r')) ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\r') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

/// The --stream mode (see the header comment).
int runStream(VerilatedContext* ctx, VSpAttenTop* top, const Options& opt) {
  // Reset (the DPI model initializes during the first evaluations).
  top->clock = 0;
  top->reset = 1;
  top->io_cmd_valid = 0;
  top->io_resp_ready = 0;
  for (int i = 0; i < 10; ++i) {
    top->clock = 0; top->eval();
    top->clock = 1; top->eval();
  }
  top->clock = 0;
  top->reset = 0;
  top->eval();
  (void)ctx;

  std::vector<std::vector<uint64_t>> queued;
  uint64_t cycle = 0;
  std::string line;
  size_t lineNo = 0;
  std::vector<uint8_t> bytes;
  auto finish = [&]() {
    top->final();
    std::printf("Q %" PRIu64 "\n", cycle);
    std::fflush(stdout);
    return 0;
  };
  while (true) {
    line.clear();
    int ch;
    while ((ch = std::getchar()) != EOF && ch != '\n') line.push_back(static_cast<char>(ch));
    if (ch == EOF && line.empty()) return finish();
    ++lineNo;
    if (line.empty()) continue;
    const char op = line[0];
    if (op == 'Q') return finish();
    if (op == 'W') {
      const auto f = splitWords(line.substr(1));
      if (f.size() != 2 || f[1].size() % 2) fail(2, "stream line " + std::to_string(lineNo) + ": expected W <addr> <hex bytes>");
      const uint64_t addr = parseHex(f[0], lineNo);
      bytes.resize(f[1].size() / 2);
      for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(parseHex(f[1].substr(2 * i, 2), lineNo));
      if (spatten_dram_host_write(addr, bytes.data(), bytes.size()) != 0)
        fail(2, "stream line " + std::to_string(lineNo) + ": the memory write failed (see above)");
      continue;
    }
    if (op == 'P') {
      const auto f = splitWords(line.substr(1));
      if (f.empty()) fail(2, "stream line " + std::to_string(lineNo) + ": a packet needs at least one word");
      std::vector<uint64_t> pkt;
      for (const auto& t : f) pkt.push_back(parseHex(t, lineNo));
      queued.push_back(std::move(pkt));
      continue;
    }
    if (op != 'R') fail(2, "stream line " + std::to_string(lineNo) + ": unknown command '" + std::string(1, op) + "' (W, P, R or Q)");
    // Run every queued packet.
    const size_t n = queued.size();
    std::vector<uint64_t> start(n, 0), end(n, 0);
    std::vector<std::vector<uint64_t>> resp(n);
    size_t p = 0, wi = 0, rp = 0;
    uint64_t lastProgress = cycle;
    while (rp < n) {
      top->io_cmd_valid = p < n;
      if (p < n) {
        top->io_cmd_bits_data = queued[p][wi];
        top->io_cmd_bits_last = wi + 1 == queued[p].size();
      }
      top->io_resp_ready = 1;
      top->eval();
      const bool cmdFire = top->io_cmd_valid && top->io_cmd_ready;
      const bool respFire = top->io_resp_valid && top->io_resp_ready;
      if (cmdFire) {
        if (wi == 0) start[p] = cycle;
        if (++wi == queued[p].size()) { ++p; wi = 0; }
      }
      if (respFire) {
        if (rp >= n) fail(3, "response words after the last expected response");
        resp[rp].push_back(top->io_resp_bits_data);
        if (top->io_resp_bits_last) end[rp++] = cycle;
      }
      if (cmdFire || respFire) lastProgress = cycle;
      top->clock = 1; top->eval();
      top->clock = 0; top->eval();
      ++cycle;
      if (cycle - lastProgress > opt.maxIdle) {
        char buf[256];
        std::snprintf(buf, sizeof buf,
                      "no progress for %" PRIu64 " cycles at cycle %" PRIu64 ": %zu of %zu queued commands sent, "
                      "%zu answered; front-end state %u, back-end state %u",
                      opt.maxIdle, cycle, p, n, rp, static_cast<unsigned>(top->io_status_state),
                      static_cast<unsigned>(top->io_status_backState));
        top->final();
        fail(3, buf);
      }
    }
    std::string out;
    char num[40];
    for (size_t i = 0; i < n; ++i) {
      std::snprintf(num, sizeof num, "A %" PRIu64 " %" PRIu64, start[i], end[i]);
      out += num;
      for (uint64_t w : resp[i]) {
        std::snprintf(num, sizeof num, " %" PRIx64, w);
        out += num;
      }
      out += '\n';
    }
    std::snprintf(num, sizeof num, "D %" PRIu64 "\n", cycle);
    out += num;
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    queued.clear();
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  if (opt.stream) {
    auto sctx = std::make_unique<VerilatedContext>();
    sctx->commandArgs(argc, argv);
    auto stop = std::make_unique<VSpAttenTop>(sctx.get(), "TOP");
    return runStream(sctx.get(), stop.get(), opt);
  }
  const std::vector<Record> cmds = readStream(opt.commands);
  std::vector<size_t> packetStart;  // word index of each command's first word
  for (size_t i = 0; i < cmds.size(); ++i)
    if (i == 0 || (cmds[i - 1].flags & 1)) packetStart.push_back(i);
  const size_t numPackets = packetStart.size();

  auto ctx = std::make_unique<VerilatedContext>();
  ctx->commandArgs(argc, argv);
  auto top = std::make_unique<VSpAttenTop>(ctx.get(), "TOP");
#if VM_TRACE
  std::unique_ptr<VerilatedVcdC> vcd;
  if (!opt.waves.empty()) {
    ctx->traceEverOn(true);
    vcd = std::make_unique<VerilatedVcdC>();
    top->trace(vcd.get(), 99);
    vcd->open((opt.waves + ".tmp").c_str());  // renamed when complete
    if (!vcd->isOpen()) fail(2, "cannot write the waveform file " + opt.waves + ".tmp");
  }
  // A dump after every evaluation that follows a clock edge, at 2 time units a cycle.
  uint64_t waveTime = 0;
  auto dumpWaves = [&]() { if (vcd) vcd->dump(waveTime++); };
  auto closeWaves = [&]() {
    if (!vcd) return;
    vcd->close();
    if (std::rename((opt.waves + ".tmp").c_str(), opt.waves.c_str()) != 0) fail(2, "cannot rename to " + opt.waves);
  };
#else
  if (!opt.waves.empty()) fail(2, "--waves needs a simulator built with tracing (run.py --waves builds one)");
  auto dumpWaves = []() {};
  auto closeWaves = []() {};
#endif

  std::vector<uint64_t> startCycle(numPackets, 0), endCycle(numPackets, 0), respWords(numPackets, 0);
  std::vector<Record> resp;
  resp.reserve(cmds.size() * 4);
  std::map<unsigned, uint64_t> stateCycles, backStateCycles, respStateCycles;
  uint64_t keyRowsWaitCycles = 0;
  std::mt19937 rng(opt.stallSeed);

  // Reset.
  top->clock = 0;
  top->reset = 1;
  top->io_cmd_valid = 0;
  top->io_resp_ready = 0;
  for (int i = 0; i < 10; ++i) {
    top->clock = 0; top->eval();
    top->clock = 1; top->eval();
  }
  top->clock = 0;
  top->reset = 0;
  top->eval();

  size_t w = 0, cmdPacket = 0, respPacket = 0;
  uint64_t cycle = 0, lastProgress = 0;
  bool respInPacket = false;
  const auto t0 = std::chrono::steady_clock::now();
  while (respPacket < numPackets) {
    // Drive inputs for this cycle (before the rising edge).
    top->io_cmd_valid = w < cmds.size();
    if (w < cmds.size()) {
      top->io_cmd_bits_data = cmds[w].data;
      top->io_cmd_bits_last = cmds[w].flags & 1;
    }
    top->io_resp_ready = opt.stallPercent == 0 || (rng() % 100) >= opt.stallPercent;
    top->eval();
    const bool cmdFire = top->io_cmd_valid && top->io_cmd_ready;
    const bool respFire = top->io_resp_valid && top->io_resp_ready;
    stateCycles[top->io_status_state]++;
    backStateCycles[top->io_status_backState]++;
    respStateCycles[top->io_status_respState]++;
    keyRowsWaitCycles += top->io_status_keyRowsWait ? 1 : 0;
    if (cmdFire) {
      if (w == packetStart[cmdPacket]) startCycle[cmdPacket] = cycle;
      if (cmds[w].flags & 1) ++cmdPacket;
      ++w;
    }
    if (respFire) {
      if (respPacket >= numPackets) fail(3, "response words after the last expected response");
      resp.push_back({top->io_resp_bits_data, static_cast<uint64_t>(top->io_resp_bits_last ? 1 : 0)});
      respWords[respPacket]++;
      respInPacket = !top->io_resp_bits_last;
      if (top->io_resp_bits_last) endCycle[respPacket++] = cycle;
    }
    if (cmdFire || respFire) lastProgress = cycle;
    top->clock = 1; top->eval();
    dumpWaves();
    top->clock = 0; top->eval();
    dumpWaves();
    ++cycle;
    if (cycle - lastProgress > opt.maxIdle) {
      char buf[512];
      std::snprintf(buf, sizeof buf,
                    "no progress for %" PRIu64 " cycles at cycle %" PRIu64 ": %zu of %zu commands sent, %zu "
                    "responses received%s; front-end state %u, back-end state %u (%s)",
                    opt.maxIdle, cycle, cmdPacket, numPackets, respPacket,
                    respInPacket ? " (one partly)" : "", static_cast<unsigned>(top->io_status_state),
                    static_cast<unsigned>(top->io_status_backState),
                    "names in contract.json (\"states\") beside the RTL: CtrlState in FrontEnd.scala, BackState in BackEnd.scala");
      top->final();
      closeWaves();  // the waves up to the hang are the point of recording them
      fail(3, buf);
    }
    if (opt.progressEvery && respFire && top->io_resp_bits_last && respPacket % opt.progressEvery == 0) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "[%s] %zu/%zu commands done, %" PRIu64 " cycles, %.0f cycles/s\n", opt.name.c_str(),
                   respPacket, numPackets, cycle, s > 0 ? cycle / s : 0.0);
    }
  }
  top->final();
  closeWaves();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::string out(reinterpret_cast<const char*>(resp.data()), resp.size() * sizeof(Record));
  writeAtomically(opt.responses, out);
  std::string log = "index,opcode,start_cycle,end_cycle,response_words\n";
  for (size_t i = 0; i < numPackets; ++i) {
    char line[128];
    std::snprintf(line, sizeof line, "%zu,%u,%" PRIu64 ",%" PRIu64 ",%" PRIu64 "\n", i,
                  static_cast<unsigned>(cmds[packetStart[i]].data & 0xFF), startCycle[i], endCycle[i], respWords[i]);
    log += line;
  }
  writeAtomically(opt.log, log);
  std::string states = "unit,state,cycles\n";
  for (const auto& [s, c] : stateCycles) states += "front," + std::to_string(s) + "," + std::to_string(c) + "\n";
  for (const auto& [s, c] : backStateCycles) states += "back," + std::to_string(s) + "," + std::to_string(c) + "\n";
  for (const auto& [s, c] : respStateCycles) states += "resp," + std::to_string(s) + "," + std::to_string(c) + "\n";
  states += "keyRowsWait,1," + std::to_string(keyRowsWaitCycles) + "\n";
  writeAtomically(opt.log + ".states", states);
  std::fprintf(stderr, "[%s] %zu commands, %" PRIu64 " cycles in %.2f s (%.0f cycles/s)\n", opt.name.c_str(),
               numPackets, cycle, secs, secs > 0 ? cycle / secs : 0.0);
  return 0;
}
