"""System XML with TorchForces that loads with the pip wheels of openmm 8.6.1 + openmmtorch 1.5.

``openmm.XmlSerializer.serialize`` writes TorchForces (the model embedded as hex) correctly, but with these wheels
``XmlSerializer.deserialize`` crashes the process (segmentation fault inside ``TorchForceProxy::deserialize``; a
binary mismatch between the two wheels, reproduced with a trivial model). :func:`deserialize_system` reads the same
XML without touching that code path: it lifts the TorchForce elements out, lets OpenMM deserialize the rest, and
rebuilds each TorchForce from its embedded model, parameters and properties in Python.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ElementTree

import openmm
import torch


def serialize_system(system: openmm.System) -> str:
    """``openmm.XmlSerializer.serialize(system)`` (the models are embedded; no file must be kept)."""
    return openmm.XmlSerializer.serialize(system)


def _torch_force(element: ElementTree.Element):
    import openmmtorch

    encoded = element.get("encodedFileContents", "")
    if not encoded:
        raise ValueError("a TorchForce in the XML refers to a model file instead of embedding it; re-create the "
                         "System with openmm_tensornet so that the model is embedded.")
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
    system = openmm.XmlSerializer.deserialize(ElementTree.tostring(root, encoding="unicode"))
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
