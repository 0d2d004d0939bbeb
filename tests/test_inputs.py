"""Every input of run.py, gen_workload.py and eval_accuracy.py checked before any work
(issue 11): one test per class of bad input (the fuzz test is in test_fuzz_inputs.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import inputs_fixtures as fx
from spatten.sim import inputs
from workloads.csvschema import read_workload

ROOT = Path(__file__).resolve().parents[1]
RTL_TOPS = [("SpAttenTop", "tiny")]


@pytest.fixture()
def build_dir(tmp_path: Path, params_files) -> Path:
    """An empty build folder holding only the presets' contracts: a run that builds
    anything leaves more than ``contract/`` behind."""
    d = tmp_path / "build"
    (d / "contract").mkdir(parents=True)
    for f in params_files.values():
        shutil.copy(f, d / "contract" / f.name)
    return d


def _built_nothing(build: Path) -> bool:
    return sorted(p.name for p in build.iterdir()) == ["contract"]


def _bad_input(proc: subprocess.CompletedProcess, *expect: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for e in expect:
        assert e in proc.stderr, (e, proc.stderr)


# ---------------------------------------------------------------------------------------
# 1. every field against the preset's limits, before any build
# ---------------------------------------------------------------------------------------

def test_fields_beyond_the_preset_rejected_before_any_build(tmp_path: Path, build_dir: Path, tiny) -> None:
    """The issue's h64 reproduction on tiny: heads beyond maxHeads were run and reported."""
    rows, _ = fx.workload()
    env = {"SPATTEN_BUILD_DIR": str(build_dir)}
    heads = [replace(rows[0], head_id=h, if_topk=False, topk=-1) for h in range(tiny.max_heads + 8)]
    csv = fx.write(tmp_path / "heads.csv", heads, None)
    proc = fx.run_py([str(csv), "--preset", "tiny", "--out", str(tmp_path / "out")], env)
    _bad_input(proc, f"{csv}:{tiny.max_heads + 2}: head_id: {tiny.max_heads} is beyond the preset's "
                     f"maxHeads={tiny.max_heads}", "7 more problems")
    assert _built_nothing(build_dir) and not (tmp_path / "out").exists()

    wide = fx.write(tmp_path / "wide.csv", [replace(rows[0], embedding_length_D=tiny.max_head_dim + 1)], None)
    _bad_input(fx.run_py([str(wide), "--preset", "tiny", "--check-only"], env),
               f"{wide}:2: embedding_length_D", f"maxHeadDim={tiny.max_head_dim}", "--preset eighth fits")

    one_bit = fx.write(tmp_path / "onebit.csv", [replace(rows[0], quant_value_bit=1)], None)
    proc = fx.run_py([str(one_bit), "--preset", "tiny", "--check-only"], env)
    _bad_input(proc, f"{one_bit}:2: quant_value_bit: 1 bit")
    assert "--preset" not in proc.stderr  # no preset lifts it

    # 0.15 / 20,000 keys is below 2^-17: the Q.16 threshold would round to 0 (every V row)
    tiny_thr = fx.write(tmp_path / "thr.csv", [replace(rows[0], extra={**rows[0].extra, "value_threshold": "7.5e-06"})],
                        None)
    proc = fx.run_py([str(tiny_thr), "--preset", "tiny", "--check-only"], env)
    _bad_input(proc, f"{tiny_thr}:2: value_threshold: 7.5e-06 rounds to 0 in the accelerator's Q.16 "
                     f"probabilities", "from N = c * 2^17 keys on")
    assert "--preset" not in proc.stderr

    from spatten.contract.params import load_params
    paper = load_params(build_dir / "contract" / next(p.name for p in (build_dir / "contract").iterdir()
                                                      if p.name.startswith("paper-") and p.suffix == ".json"))
    long_l = paper.max_tokens + 1
    long = fx.write(tmp_path / "long.csv", [replace(rows[0], sentence_length_L=long_l)], None)
    for preset in ("tiny", "paper"):
        _bad_input(fx.run_py([str(long), "--preset", preset, "--check-only"], env),
                   f"{long}:2: sentence_length_L: {long_l} keys exceed", "no preset fits: even the largest, paper",
                   f"maxTokens >= {long_l}")
    assert _built_nothing(build_dir)


def test_long_context_limits_of_the_paper_preset(tmp_path: Path, build_dir: Path, params_files) -> None:
    """Heads of 128 and 32,768-token contexts fit the paper preset; one more of either, or a
    head beyond maxHeads, is rejected before any build naming the line, the field and the limit."""
    from spatten.contract.params import load_params

    paper = load_params(params_files["paper"])
    assert paper.max_head_dim >= 128 and paper.max_tokens >= 32768
    env = {"SPATTEN_BUILD_DIR": str(build_dir)}
    rows, _ = fx.workload()
    base = replace(rows[0], if_topk=False, topk=-1, extra={}, embedding_length_D=paper.max_head_dim,
                   sentence_length_L=paper.max_tokens, key_fetch_num=paper.max_tokens, value_fetch_num=64)
    fits = fx.write(tmp_path / "fits.csv", [base, replace(base, head_id=paper.max_heads - 1)], None)
    ok = fx.run_py([str(fits), "--preset", "paper", "--check-only"], env)
    assert ok.returncode == 0 and "inputs OK" in ok.stderr, ok.stderr
    for fld, value, limit in (("embedding_length_D", paper.max_head_dim + 1, f"maxHeadDim={paper.max_head_dim}"),
                              ("sentence_length_L", paper.max_tokens + 1, f"maxTokens={paper.max_tokens}"),
                              ("head_id", paper.max_heads, f"maxHeads={paper.max_heads}")):
        csv = fx.write(tmp_path / f"{fld}.csv", [base, replace(base, **{fld: value})], None)
        _bad_input(fx.run_py([str(csv), "--preset", "paper", "--check-only"], env),
                   f"{csv}:3: {fld}: {value}", limit)
    assert _built_nothing(build_dir)


def test_memory_image_beyond_the_address_space_rejected(tmp_path: Path, build_dir: Path, params_files) -> None:
    """8 layers x 32 heads of 32,768 tokens at D = 128: the dense baseline's image (16-bit
    K and V of every token of every head, 4 GiB) does not fit 2^32 bytes, the SpAtten run's
    (8-bit K MSBs and V, 2 GiB) does."""
    from spatten.contract.params import load_params

    paper = load_params(params_files["paper"])
    assert paper.dram_addr_bits == 32
    env = {"SPATTEN_BUILD_DIR": str(build_dir)}
    rows, _ = fx.workload()
    big = [replace(rows[0], layer_id=la, head_id=h, if_topk=False, topk=-1, extra={}, embedding_length_D=128,
                   sentence_length_L=32768, key_fetch_num=32768, value_fetch_num=64)
           for la in range(8) for h in range(32)]
    csv = fx.write(tmp_path / "big.csv", big, None)
    _bad_input(fx.run_py([str(csv), "--preset", "paper", "--check-only"], env),
               f"{csv}: sentence_length_L, embedding_length_D", "dense baseline run's memory image needs 4.0",
               "2^dramAddrBits = 2^32 bytes (4.00 GiB)", "--no-dense")
    ok = fx.run_py([str(csv), "--preset", "paper", "--check-only", "--no-dense"], env)
    assert ok.returncode == 0, ok.stderr
    assert _built_nothing(build_dir)


def test_image_bytes_is_what_the_program_allocates(tmp_path: Path, tiny) -> None:
    """``inputs.image_bytes`` (the address-space check) against the programs' own images:
    planes exact, token lists an upper bound (exact on the functional workload, whose
    distinct lists are known from its tensors)."""
    from spatten.sim import program

    rows, t = fx.workload()
    rows = read_workload(fx.write(tmp_path / "w.csv", rows, t)).rows
    start = inputs.IMAGE_START_BURSTS * tiny.burst_bytes
    b = tiny.burst_bytes
    distinct = {tuple(t["kept_ids"][t["kept_offsets"][i]:t["kept_offsets"][i + 1]]) for i in range(len(rows))}
    for tensors, dense in ((t, False), (None, False), (None, True)):
        prog = program.build(program.dense_rows(rows) if dense else rows, tiny, tensors=tensors, dense=dense)
        total, planes, lists = inputs.image_bytes(rows, tiny, tensors, dense)
        assert total == start + planes + lists and total >= prog.image.size
        used_by_lists = prog.image.size - start - planes
        assert 0 < used_by_lists <= lists, (tensors is None, dense, used_by_lists, lists)
        if tensors is not None:
            assert used_by_lists == sum(-(-2 * len(ids) // b) * b for ids in distinct)


# ---------------------------------------------------------------------------------------
# 2. tensors against the CSV
# ---------------------------------------------------------------------------------------

def _check_only(csv: Path, build_dir: Path) -> subprocess.CompletedProcess:
    return fx.run_py([str(csv), "--preset", "tiny", "--check-only"], {"SPATTEN_BUILD_DIR": str(build_dir)})


def test_tensors_checked_against_the_csv(tmp_path: Path, build_dir: Path) -> None:
    rows, t = fx.workload()
    csv = fx.write(tmp_path / "w.csv", rows, t)
    npz = csv.with_suffix(".npz")
    ok = _check_only(csv, build_dir)
    assert ok.returncode == 0 and "inputs OK" in ok.stderr and "unverifiable" not in ok.stderr, ok.stderr

    # the shipped files have no identity array: checked by shape and count, with a note
    fx.write(csv, rows, {k: a for k, a in t.items() if k != "row_id"})
    ok = _check_only(csv, build_dir)
    assert ok.returncode == 0 and ok.stderr.count("unverifiable identity") == 1, ok.stderr

    cases = {
        # a CSV filtered to one layer ran on other layers' tensors
        "filtered": ([r for r in rows if r.layer_id == 1], t, ["key 'row_kv_head'", "16 rows", "has 8 data rows"]),
        # rows in another order: same count, the identity tells
        "swapped": ([rows[1], rows[0]] + rows[2:], t, ["key 'row_id'", "row 0", "head 1"]),
        # key_fetch_num was ignored in functional mode
        "kfn": ([replace(rows[4], key_fetch_num=10, value_fetch_num=5) if i == 4 else r for i, r in enumerate(rows)],
                {k: a for k, a in t.items() if k != "row_id"}, ["key 'kept_offsets'", "30 kept token ids",
                                                                 "key_fetch_num is 10"]),
        "missing_q": (rows, {k: a for k, a in t.items() if k != "q"}, ["missing key 'q'"]),
        "kv_head": ([replace(r, extra={"kv_head_id": "1"}) for r in rows], t, ["key 'row_kv_head'", "kv_head_id"]),
    }
    for name, (r, tt, expect) in cases.items():
        fx.write(csv, r, tt)
        _bad_input(_check_only(csv, build_dir), str(npz), *expect)

    # another workload's tensors
    fx.write(csv, rows[:5], t)
    _bad_input(_check_only(csv, build_dir), str(npz), "belong to another workload")
    # unreadable archives: truncated, empty, garbage, a lone .npy
    good = fx.npz_bytes(t)
    fx.write(csv, rows, None)
    import io
    lone = io.BytesIO()
    np.save(lone, np.zeros(3))
    for blob in (good[: len(good) // 2], b"", b"garbage, not a zip\n" * 10, good[:-200], lone.getvalue()):
        npz.write_bytes(blob)
        proc = _check_only(csv, build_dir)
        _bad_input(proc, str(npz))
        assert "pickle" not in proc.stderr.replace("numpy took it for a pickle", "") and "Aborted" not in proc.stderr
    assert _built_nothing(build_dir)


def test_functional_run_without_out_ref_says_not_checked(tmp_path: Path) -> None:
    """A functional run on tiny with verified identity; the missing out_ref is reported as
    not checked, never as 'max 0'."""
    rows, t = fx.workload(out_ref=False)
    csv = fx.write(tmp_path / "f.csv", rows, t)
    out = tmp_path / "out"
    proc = fx.run_py([str(csv), "--preset", "tiny", "--out", str(out), "--no-dense"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["mismatches"] == 0 and s["query_heads"] == len(rows)
    fe = s["float_error"]
    assert fe["requests"] == len(rows) and fe["violations"] == 0 and fe["model_max_abs"] is None
    assert "not checked (the tensors have no out_ref)" in proc.stdout
    assert not re.search(r"vs the model's float\s+max 0", proc.stdout)


# ---------------------------------------------------------------------------------------
# 3. requests that would end in an error response
# ---------------------------------------------------------------------------------------

def test_error_responses_fail_the_run(tiny) -> None:
    """A program holding a request the hardware refuses (here: a head beyond maxHeads,
    past the row check) is refused; a valid one passes."""
    from spatten.sim import program

    rows, _ = fx.workload()
    good = [replace(r, index=i, line=i + 2, if_accumulate_importance=True, if_rescale_previous_importance=False)
            for i, r in enumerate(rows)]
    inputs.check_no_error_responses(program.build(good, tiny), "w.csv")
    bad = good[:3] + [replace(good[3], head_id=tiny.max_heads)]
    prog = program.build(bad, tiny)
    # refused: the ATTEND holding head maxHeads, and the TOPK_HEADS over maxHeads + 1 heads
    with pytest.raises(inputs.InputError, match=r"w.csv: 2 of \d+ requests would end in an error response "
                                                r"\(the first: command \d+, topk_heads"):
        inputs.check_no_error_responses(prog, "w.csv")
    from spatten.contract.layout import layout
    err = layout().opcode("ERROR")
    refused = [i for i, e in enumerate(prog.expected) if e and layout().opcode_field.extract(int(e[0][0])) == err]
    assert [prog.info[i].kind for i in refused] == ["topk_heads", "attend"]
    a = prog.info[refused[1]]
    assert tiny.max_heads in (a.head_ids or (a.head,))
    with pytest.raises(inputs.InputError, match="head_id"):
        inputs.check_rows("w.csv", bad, tiny)


# ---------------------------------------------------------------------------------------
# 5. DRAM configuration, backends
# ---------------------------------------------------------------------------------------

def _cfg(org: str, timing: str, extra_ctrl: str = "", mapper: str = "RoBaRaCoCh") -> str:
    """The YAML of hardware/dpi/tests/dram_config_test.cc's cfgText."""
    return ("MemorySystem:\n  impl: GenericDRAM\n  clock_ratio: 1\n  DRAM:\n    impl: HBM2\n"
            f"    org: {org}\n    timing: {timing}\n  Controller:\n    impl: Generic\n"
            f"    Scheduler: {{impl: FRFCFS}}\n    RefreshManager: {{impl: AllBank}}\n{extra_ctrl}"
            f"  AddrMapper: {{impl: {mapper}}}\n")


@pytest.mark.parametrize("text, expect", [  # the cases of dram_config_test.cc, same messages
    (_cfg("{preset: HBM2_9Gb}", "{preset: HBM2_2Gbps}"), "unknown organization preset 'HBM2_9Gb'"),
    (_cfg("{preset: HBM2_8Gb}", "{preset: HBM2_3Gbps}"), "unknown timing preset 'HBM2_3Gbps'"),
    ("MemorySystem: {impl: GenericDRAM, DRAM: {impl: HBM2, org: {preset: HBM2_8Gb}}}",
     "MemorySystem.DRAM.timing: missing field"),
    (_cfg("{dq: 128, channel: 1, pseudochannel: 2, bankgroup: 4, bank: 4, row: 32768, column: 64}",
          "{preset: HBM2_2Gbps}"), "MemorySystem.DRAM.org.density: missing field"),
    (_cfg("{preset: HBM2_8Gb}", "{rate: 2000}"), "MemorySystem.DRAM.timing.nBL: missing field"),
    ("MemorySystem: {impl: GenericDRAM, DRAM: {impl: HBM2, org: {preset: HBM2_8Gb}, timing: {preset: HBM2_2Gbps}},"
     " Controller: {impl: Generic, Scheduler: {impl: FRFCFS}}, AddrMapper: {impl: RoBaRaCoCh}}",
     "MemorySystem.Controller.RefreshManager: missing field"),
    (_cfg("{preset: HBM2_8Gb, channel: 3}", "{preset: HBM2_2Gbps}"),
     "MemorySystem.DRAM.org.channel: must be a power of two, got 3"),
    (_cfg("{preset: HBM2_8Gb, bank: 6}", "{preset: HBM2_2Gbps}"), "org.bank: must be a power of two"),
    (_cfg("{preset: HBM2_8Gb, density: 6144}", "{preset: HBM2_2Gbps}"), "calculated channel density 8192 Mb"),
    (_cfg("{preset: HBM2_8Gb}", "{preset: HBM2_2Gbps, nXYZ: 3}"), "timing.nXYZ: unknown timing parameter"),
    (_cfg("{preset: HBM2_8Gb}", "{preset: HBM2_2Gbps, rate: 1600}"), "cannot change the transfer rate"),
    (_cfg("{preset: HBM2_8Gb}", "{preset: HBM2_2Gbps, nCL: seven}"), "timing.nCL: expected an integer"),
    (_cfg("{preset: HBM2_8Gb}", "{preset: HBM2_2Gbps}", "", "MOP4CLXOR"), "unknown address mapper 'MOP4CLXOR'"),
    ("MemorySystem: {impl: GenericDRAM, DRAM: {impl: DDR4}}", "MemorySystem.DRAM.impl: unsupported 'DDR4'"),
    ("MemorySystem: [1, 2", "not valid YAML"),
    (_cfg("{preset: HBM2_8Gb}", "{preset: HBM2_2Gbps}", "    read_queue_size: 0\n"), "read_queue_size: must be in"),
    (_cfg("{preset: HBM2_8Gb}", "{preset: HBM2_2Gbps, nREFI: 0}"), "nBL/nCL/nREFI: must be positive"),
    ("", "(top level): expected a mapping"),
])
def test_dram_config_rules_as_the_cpp_side(text: str, expect: str) -> None:
    with pytest.raises(inputs.InputError, match=re.escape(expect)):
        inputs.parse_dram_config(text, "test.yaml")


def test_dram_configs_accepted_and_checked_before_any_build(tmp_path: Path, build_dir: Path) -> None:
    for f in sorted((ROOT / "hardware" / "dpi" / "configs").glob("*.yaml")):
        inputs.check_dram_config(f)
    c = inputs.parse_dram_config(_cfg("{preset: HBM2_4Gb}", "{preset: HBM2_2Gbps, nCL: 9, tRP: 14.0}"), "t")
    assert (c["org"]["bank"], c["org"]["row"], c["timing"]["nCL"], c["timing"]["nRP"], c["timing"]["nRFC"]) == \
        (4, 1 << 14, 9, 14, 260)  # the values dram_config_test.cc expects of the C++ parser
    rows, _ = fx.workload()
    csv = fx.write(tmp_path / "w.csv", rows, None)
    env = {"SPATTEN_BUILD_DIR": str(build_dir)}
    bad = tmp_path / "bad.yaml"
    bad.write_text(_cfg("{preset: HBM2_8Gb, density: 6144}", "{preset: HBM2_2Gbps}"))
    _bad_input(fx.run_py([str(csv), "--preset", "tiny", "--dram-config", str(bad)], env),
               f"DRAM config {bad}: MemorySystem.DRAM.org.density")
    _bad_input(fx.run_py([str(csv), "--preset", "tiny", "--dram-config", str(tmp_path / "none.yaml")], env),
               "none.yaml: file not found")
    _bad_input(fx.run_py([str(csv), "--preset", "tiny", "--dram", "ideal", "--dram-config", str(bad)], env),
               "--dram ideal", "--dram-config")
    ram = tmp_path / "no-ramulator"
    _bad_input(fx.run_py([str(csv), "--preset", "tiny", "--dram", "ramulator2"],
                         {**env, "SPATTEN_RAMULATOR2_DIR": str(ram)}), f"no Ramulator2 checkout at {ram}",
               "build_ramulator2.py")
    assert _built_nothing(build_dir)


# ---------------------------------------------------------------------------------------
# 4 (part). output folder
# ---------------------------------------------------------------------------------------

def test_output_folder_checked_before_any_build(tmp_path: Path, build_dir: Path) -> None:
    rows, _ = fx.workload()
    csv = fx.write(tmp_path / "w.csv", rows, None)
    env = {"SPATTEN_BUILD_DIR": str(build_dir)}
    _bad_input(fx.run_py([str(csv), "--preset", "tiny", "--out", ""], env), "--out: empty path")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    _bad_input(fx.run_py([str(csv), "--preset", "tiny", "--out", str(a_file)], env), "not a folder")
    _bad_input(fx.run_py([str(csv), "--preset", "tiny", "--out", str(a_file / "sub")], env), "not writable")
    _bad_input(fx.run_py([str(csv), "--preset", "tiny", "--out", "/proc/spatten-out"], env), "not writable")
    if os.geteuid() != 0:  # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        _bad_input(fx.run_py([str(csv), "--preset", "tiny", "--out", str(ro)], env), "not writable")
    assert _built_nothing(build_dir)


# ---------------------------------------------------------------------------------------
# 6. text and options of the generators; BOM; exit codes
# ---------------------------------------------------------------------------------------

def test_bom_csv_accepted(tmp_path: Path, build_dir: Path) -> None:
    rows, _ = fx.workload()
    csv = fx.write(tmp_path / "w.csv", rows, None)
    csv.write_bytes(b"\xef\xbb\xbf" + csv.read_bytes())
    assert len(read_workload(csv).rows) == len(rows)
    proc = _check_only(csv, build_dir)
    assert proc.returncode == 0, proc.stderr


def _tool(name: str, *args: str) -> tuple[int, str]:
    """(exit status, output) of tools/<name>'s CLI, in-process (its imports are slow)."""
    from click.testing import CliRunner

    if name == "gen_workload.py":
        from tools.gen_workload import main
    else:
        from tools.eval_accuracy import main
    res = CliRunner().invoke(main, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res.exit_code, res.output


def _bad_tool(res: tuple[int, str], *expect: str) -> str:
    code, output = res
    assert code == 2, output
    assert "Traceback" not in output, output
    for e in expect:
        assert e in output, (e, output)
    return output


def test_generator_inputs_checked_before_the_model_loads(tmp_path: Path) -> None:
    """The model named does not exist: each error below must come first (no model loaded)."""
    empty, binary, short = tmp_path / "empty.txt", tmp_path / "bin.txt", tmp_path / "short.txt"
    empty.write_text("  \n")
    binary.write_bytes(b"\x00\x01\x02text\x00" * 200)
    short.write_text("a few words only")
    out = tmp_path / "o" / "w.csv"
    for args, expect in [(["--text", str(empty)], "the text is empty"),
                         (["--text", str(binary)], "binary data, not text"),
                         (["--text", str(short)], "fewer than the"),
                         (["--steps", "0"], "at least one decode step"),
                         (["--threads", "0"], "--threads")]:
        output = _bad_tool(_tool("gen_workload.py", "--model", "no-such-model-xyz", "--context", "64", "--out",
                                 str(out), *args), expect)
        assert "unknown model" not in output
    assert not (tmp_path / "o").exists()
    not_json = tmp_path / "r.json"
    not_json.write_text("NOT_JSON")
    _bad_tool(_tool("eval_accuracy.py", "--model", "x", "--out", str(tmp_path / "acc"), "--merge", str(not_json)),
              f"--merge {not_json}: not a JSON file")
    not_json.write_text('{"model": "m"}')
    _bad_tool(_tool("eval_accuracy.py", "--model", "x", "--out", str(tmp_path / "acc"), "--merge", str(not_json)),
              "not an eval_accuracy.py result")
    _bad_tool(_tool("eval_accuracy.py", "--model", "no-such-model-xyz", "--out", str(tmp_path / "acc"),
                    "--eval-tokens", "0"), "--eval-tokens")
    _bad_tool(_tool("eval_accuracy.py", "--model", "no-such-model-xyz", "--out", str(tmp_path / "acc"),
                    "--text", str(empty)), "the text is empty")
    assert not list(tmp_path.glob("acc*"))
