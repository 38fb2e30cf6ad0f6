"""When bfloat16 autocast is used on CPU (ualm_tk.utils.cpu_precision): cpu_bf16 auto / true / false."""
import logging

import pytest

from ualm_tk.utils import cpu_precision
from ualm_tk.utils.cpu_precision import native_bf16_from_cpuinfo, resolve_cpu_bf16

EPYC_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n"
XEON_SPR = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile\n"
XEON_AMX_ONLY = "flags\t: avx2 avx512f amx_bf16\n"
SKYLAKE = "flags\t: avx2 avx512f avx512bw avx512vl\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd atomics\n"


@pytest.mark.parametrize("cpuinfo, machine, native", [
    (EPYC_AVX2, "x86_64", False), (SKYLAKE, "x86_64", False),  # AVX-512 without BF16: emulated
    (XEON_SPR, "x86_64", True), (XEON_AMX_ONLY, "x86_64", True),
    (GRAVITON3, "aarch64", True), (GRAVITON2, "aarch64", False), ("", "x86_64", False),
])
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo, machine, native):
    assert native_bf16_from_cpuinfo(cpuinfo, machine) is native


def test_auto_follows_the_cpu_true_and_false_are_kept(monkeypatch, caplog):
    for native in (True, False):
        monkeypatch.setattr(cpu_precision, "cpu_has_native_bf16", lambda: native)
        assert resolve_cpu_bf16("auto") is native and resolve_cpu_bf16(" AUTO ") is native
        assert resolve_cpu_bf16(False) is False
        with caplog.at_level(logging.WARNING, logger="ualm_tk.utils.cpu_precision"):
            caplog.clear()
            assert resolve_cpu_bf16(True, "model_conf.cpu_bf16") is True
        # forcing bf16 where it is emulated is allowed, but said
        assert ("emulated" in caplog.text) is (not native)


@pytest.mark.parametrize("bad", ["yes", 1, None, "on"])
def test_other_values_name_the_key(bad):
    with pytest.raises(ValueError, match=r"model_conf.cpu_bf16: expected auto, true or false"):
        resolve_cpu_bf16(bad, "model_conf.cpu_bf16")
