"""Build step for the one compiled module; all metadata lives in pyproject.toml.

``casebook.index._hnswmap`` searches hnswlib index files through a memory map (see
index/_hnswmap.cpp). It is built for baseline x86-64 (never ``-march=native``: the bundle must run
on every reading-room PC) and picks AVX2 at run time. It is optional: where it cannot be built,
Casebook falls back to loading indexes with hnswlib, which is slower to open but equivalent.
"""
from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

setup(
    ext_modules=[
        Pybind11Extension(
            "casebook.index._hnswmap",
            ["index/_hnswmap.cpp"],
            cxx_std=17,
            extra_compile_args=["-O3"] if __import__("os").name != "nt" else ["/O2"],
            optional=True,
        )
    ],
    cmdclass={"build_ext": build_ext},
)
