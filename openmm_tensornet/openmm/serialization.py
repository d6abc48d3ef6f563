"""System XML with TorchForces that loads with the pip wheels of openmm 8.6.1 + openmmtorch 1.5.

``openmm.XmlSerializer.serialize`` writes TorchForces (the model embedded as hex) correctly, but with these wheels
``XmlSerializer.deserialize`` crashes the process (segmentation fault inside ``TorchForceProxy::deserialize``; a
binary mismatch between the two wheels, reproduced with a trivial model). :func:`deserialize_system` reads the same
XML without touching that code path: it lifts the TorchForce elements out, lets OpenMM deserialize the rest, and
rebuilds each TorchForce from its embedded model, parameters and properties in Python.

The same crash hits ``XmlSerializer.clone`` and so ``copy.deepcopy`` of a TorchForce or of a System holding one
(openmm-ml's interpolation deep-copies forces), and ``copy.copy/deepcopy`` of such a System fails.
:func:`install_safe_copies`, run on ``import openmm_tensornet``, routes exactly those cases of
``XmlSerializer.clone`` / ``deserialize`` / ``deserializeSystem`` and ``System.__copy__`` through the code here and
leaves every other object to OpenMM.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ElementTree

import openmm
import torch

from .openmmtorch_module import import_openmmtorch


def serialize_system(system: openmm.System) -> str:
    """``openmm.XmlSerializer.serialize(system)`` (the models are embedded; no file must be kept)."""
    return openmm.XmlSerializer.serialize(system)


def _torch_force(element: ElementTree.Element):
    openmmtorch = import_openmmtorch()

    encoded = element.get("encodedFileContents", "")
    if not encoded:
        raise ValueError("a TorchForce in the XML refers to a model file instead of embedding it; re-create the "
                         "System with openmm_tensornet so that the model is embedded.")
    from ..ops.library import load_ops

    load_ops()  # the model calls the ops: they must be registered before it is loaded
    module = torch.jit.load(io.BytesIO(bytes.fromhex(encoded)))
    force = openmmtorch.TorchForce(module)
    force.setForceGroup(int(element.get("forceGroup", "0")))
    force.setUsesPeriodicBoundaryConditions(element.get("usesPeriodic", "0") == "1")
    force.setOutputsForces(element.get("outputsForces", "0") == "1")
    for parameter in element.findall("GlobalParameters/Parameter"):
        force.addGlobalParameter(parameter.get("name"), float(parameter.get("default")))
    for derivative in element.findall("ParameterDerivatives/Parameter"):
        force.addEnergyParameterDerivative(derivative.get("name"))
    for prop in element.findall("Properties/Property"):
        force.setProperty(prop.get("name"), prop.get("value"))
    return force


def deserialize_system(xml: str) -> openmm.System:
    """Read a System written by :func:`serialize_system` (or ``XmlSerializer.serialize``), TorchForces included.

    The forces keep their order. Needs ``import openmm_tensornet`` (this module does it) for the neighbour op.
    """
    root = ElementTree.fromstring(xml)
    forces = root.find("Forces")
    lifted = []
    if forces is not None:
        for position, element in enumerate(list(forces)):
            if element.get("type") == "TorchForce":
                lifted.append((position, element))
        for _, element in lifted:
            forces.remove(element)
    system = openmm.XmlSerializer.deserialize(ElementTree.tostring(root, encoding="unicode"))  # no TorchForce left
    if not lifted:
        return system
    others = [openmm.XmlSerializer.clone(system.getForce(k)) for k in range(system.getNumForces())]
    while system.getNumForces() > 0:
        system.removeForce(system.getNumForces() - 1)
    rebuilt = {position: _torch_force(element) for position, element in lifted}
    iterator = iter(others)
    for position in range(len(others) + len(rebuilt)):
        system.addForce(rebuilt[position] if position in rebuilt else next(iterator))
    return system


def _is_torch_force_xml(text: str) -> bool:
    return 'type="TorchForce"' in text


def _may_hold_torch_force(obj) -> bool:
    """Cheap test first: plugin forces come back from ``System.getForce`` as plain ``openmm.Force``."""
    if isinstance(obj, openmm.System):
        return any(type(force).__name__ in ("Force", "TorchForce") for force in obj.getForces())
    return isinstance(obj, openmm.Force) and type(obj).__name__ in ("Force", "TorchForce")


def _deserialize_any(text: str):
    root = ElementTree.fromstring(text)
    if root.tag == "System":
        return deserialize_system(text)
    if root.tag == "Force" and root.get("type") == "TorchForce":
        return _torch_force(root)
    raise ValueError(f"cannot deserialize a {root.tag} holding a TorchForce.")


def install_safe_copies() -> None:
    """Make ``XmlSerializer.clone`` / ``deserialize`` (and so ``copy.deepcopy``) safe for TorchForces."""
    serializer = openmm.XmlSerializer
    if getattr(serializer.clone, "_openmm_tensornet", False):
        return
    original_clone, original_deserialize = serializer.clone, serializer.deserialize
    original_deserialize_system = serializer.deserializeSystem

    def clone(obj):
        if _may_hold_torch_force(obj):
            text = serializer.serialize(obj)
            if _is_torch_force_xml(text):
                return _deserialize_any(text)
        return original_clone(obj)

    def deserialize(text):
        return _deserialize_any(text) if _is_torch_force_xml(text) else original_deserialize(text)

    def deserializeSystem(text):  # noqa: N802 - OpenMM's name
        return deserialize_system(text) if _is_torch_force_xml(text) else original_deserialize_system(text)

    for function, original in ((clone, original_clone), (deserialize, original_deserialize),
                               (deserializeSystem, original_deserialize_system)):
        function._openmm_tensornet = True
        function.__doc__ = original.__doc__
    serializer.clone = staticmethod(clone)
    serializer.deserialize = staticmethod(deserialize)
    serializer.deserializeSystem = staticmethod(deserializeSystem)

    # System.__copy__ is C++ and rejects TorchForce XML ("Unknown property 'encodedFileContents'").
    original_copy = openmm.System.__copy__

    def system_copy(self):
        return clone(self) if _may_hold_torch_force(self) else original_copy(self)

    openmm.System.__copy__ = system_copy
    openmm.System.__deepcopy__ = lambda self, memo: system_copy(self)
