"""The one build step pyproject.toml cannot declare stably: the optional C extension.

``harvester.records._flatjson`` is the native reader of flat records bodies
(``harvester/records/native_reader.py`` says why it exists). It is optional: without a C
compiler the install still succeeds and pyarrow.json reads every body.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "harvester.records._flatjson",
            sources=["harvester/records/_flatjson.c"],
            depends=["harvester/records/_flatjson_values.h", "harvester/records/_flatjson_shape.h"],
            optional=True,
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra"],
        )
    ]
)
