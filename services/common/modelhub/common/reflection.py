"""Server reflection that serves the .proto files with their comments.

The generated `_pb2` modules register their files without source info, and upb's
`FileDescriptor.CopyToProto` leaves it out anyway, so reflection from the default pool shows
no comments (`grpcurl describe` prints bare definitions). `make proto` writes every proto,
with its imports and source info, to `modelhub/api/descriptors.pb`; `SourceInfoPool` answers
reflection from those FileDescriptorProtos, as compiled. It also finds the file of a method
(`grpcurl describe pkg.Service.Method`), which upb's `FindFileContainingSymbol` does not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib import resources

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet
from google.protobuf.message import DecodeError

log = logging.getLogger("modelhub.server")

# Written into the `modelhub.api` package by `make proto` (tools/gen_protos.py).
DESCRIPTOR_SET = "descriptors.pb"


def load_descriptor_set(package: str = "modelhub.api") -> list[FileDescriptorProto]:
    """The files of `package`'s descriptor set (dependencies first), or [] when it is
    missing or unreadable (reflection then still works, without comments)."""
    try:
        data = (resources.files(package) / DESCRIPTOR_SET).read_bytes()
        return list(FileDescriptorSet.FromString(data).file)
    except (OSError, ModuleNotFoundError, DecodeError) as exc:
        log.warning(
            "server reflection will describe services without their comments: cannot read "
            "%s/%s (%s); run `make proto`",
            package.replace(".", "/"),
            DESCRIPTOR_SET,
            exc,
        )
        return []


class ReflectedFile:
    """What grpcio-reflection reads of a file descriptor (`name`, `dependencies`,
    `CopyToProto`), copying out the FileDescriptorProto as compiled, source info included."""

    __slots__ = ("_proto", "dependencies", "name")

    def __init__(self, proto: FileDescriptorProto, dependencies: list[ReflectedFile]) -> None:
        self.name = proto.name
        self.dependencies = dependencies
        self._proto = proto

    def CopyToProto(self, proto: FileDescriptorProto) -> None:
        proto.CopyFrom(self._proto)


class SourceInfoPool:
    """The part of a `DescriptorPool` grpcio-reflection uses (`pool=` of
    `enable_server_reflection`), built from FileDescriptorProtos that keep their comments.

    Services in `service_names` that `files` do not define (health, reflection itself) are
    taken, without comments, from the default pool that their generated modules filled.
    """

    def __init__(self, files: Iterable[FileDescriptorProto], service_names: Iterable[str]) -> None:
        self._pool = descriptor_pool.DescriptorPool()
        self._protos: dict[str, FileDescriptorProto] = {}
        self._files: dict[str, ReflectedFile] = {}
        for proto in files:
            if proto.name not in self._protos:
                self._add(proto)
        default = descriptor_pool.Default()
        for name in service_names:
            try:
                self._pool.FindServiceByName(name)
            except KeyError:
                try:
                    self._add_with_dependencies(default.FindServiceByName(name).file)
                except KeyError:
                    log.warning("server reflection cannot describe %s: no descriptor", name)

    def _add(self, proto: FileDescriptorProto) -> None:
        self._pool.Add(proto)
        self._protos[proto.name] = proto

    def _add_with_dependencies(self, file: FileDescriptor) -> None:
        if file.name in self._protos:
            return
        for dependency in file.dependencies:
            self._add_with_dependencies(dependency)
        proto = FileDescriptorProto()
        file.CopyToProto(proto)
        self._add(proto)

    def _file(self, file: FileDescriptor) -> ReflectedFile:
        reflected = self._files.get(file.name)
        if reflected is None:
            dependencies = [self._file(d) for d in file.dependencies]
            reflected = self._files[file.name] = ReflectedFile(
                self._protos[file.name], dependencies
            )
        return reflected

    def FindFileByName(self, name: str) -> ReflectedFile:
        return self._file(self._pool.FindFileByName(name))

    def FindFileContainingSymbol(self, symbol: str) -> ReflectedFile:
        try:
            file = self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            # A method: `package.Service.Method`.
            service_name, _, method = symbol.rpartition(".")
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                raise KeyError(symbol) from None
            if method not in service.methods_by_name:
                raise KeyError(symbol) from None
            file = service.file
        return self._file(file)

    def FindMessageTypeByName(self, name: str) -> Descriptor:
        return self._pool.FindMessageTypeByName(name)

    def FindExtensionByNumber(self, message: Descriptor, number: int) -> FieldDescriptor:
        return self._pool.FindExtensionByNumber(message, number)

    def FindAllExtensions(self, message: Descriptor) -> list[FieldDescriptor]:
        return self._pool.FindAllExtensions(message)
