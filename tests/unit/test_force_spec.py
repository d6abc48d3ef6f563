"""ForceSpec: the one typed description of an ML force, checked once, shared by both backends and the export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openmm_tensornet import ForceSpec, TensorNet, create_python_force
from openmm_tensornet.openmm.force_spec import box_volume_nm3, estimate_neighbor_capacity


def model(**options):
    torch.manual_seed(0)
    return TensorNet(hidden_channels=8, num_layers=1, num_rbf=4, cutoff_upper=4.0, max_z=18, elements=[1, 6, 8],
                     **options)


@pytest.mark.parametrize("arguments, message", [
    (dict(atomic_numbers=()), "atomic_numbers is empty"),
    (dict(atomic_numbers=(8, 1), atoms=(0,)), "atoms has 1 entries but atomic_numbers has 2"),
    (dict(atomic_numbers=(8, 1), atoms=(3, 3)), "duplicate"),
    (dict(atomic_numbers=(8, 1), atoms=(0, 5), num_particles=5), r"in \[0, 5\); got min 0, max 5"),
    (dict(atomic_numbers=(8, 1), atoms=(-1, 0)), "got min -1"),
    (dict(atomic_numbers=(8,), force_group=32), r"force_group must be in \[0, 31\]"),
    (dict(atomic_numbers=(8,), neighbor_capacity=0), "neighbor_capacity must be a positive"),
    (dict(atomic_numbers=(8, 1), atoms=(4, 5), bonds=((4, 6),)), r"bonds \[\(4, 6\)\] do not join two different ML"),
    (dict(atomic_numbers=(8, 1), atoms=(4, 5), bonds=((5, 5),)), "do not join two different ML atoms"),
])
def test_a_spec_checks_its_fields_when_made(arguments, message):
    with pytest.raises(ValueError, match=message):
        ForceSpec(**arguments)


def test_unknown_options_are_named_with_the_known_ones():
    with pytest.raises(TypeError, match=r"unknown force options \['force_grup'\].*'force_group'"):
        ForceSpec.of([8, 1, 1], force_grup=1)
    with pytest.raises(TypeError, match="unknown force options"):
        create_python_force(model(), [8, 1, 1], cuda_graph=True)


def test_layout_follows_geometry_box_and_parameter():
    plain = ForceSpec.of([8, 1, 1])
    assert (plain.geometry, plain.box_input, plain.scaled) == ("none", False, None)
    region = ForceSpec.of([8, 1, 1], [4, 5, 6], uses_box=True, global_parameter="lambda_interpolate")
    assert (region.geometry, region.box_input, region.scaled) == ("molecule", True, "box")
    box = ForceSpec.of([8, 1, 1], periodic=True, global_parameter="x")
    assert (box.geometry, box.box_input, box.scaled) == ("periodic", True, "box")
    assert ForceSpec.of([8, 1, 1], global_parameter="x").scaled == "nobox"
    assert region.atoms == (4, 5, 6) and isinstance(region.atomic_numbers, tuple)


def test_bonds_are_given_as_particle_indices_and_used_as_region_positions():
    spec = ForceSpec.of([8, 1, 1], [9, 4, 5], bonds=[(4, 9), (9, 5)])
    assert spec.bonds == ((4, 9), (9, 5))
    assert spec.region_bonds == ((1, 0), (0, 2))


def test_the_region_tree_sums_each_atom_path_to_the_first_atom():
    from openmm_tensornet.openmm.region_tree import region_tree

    # 0-1-2-3-4-5 and 2-6 (a branch), 7-8 (a part no bond joins to the rest), 9 alone
    tree = region_tree(10, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (2, 6), (7, 8)])
    assert tree.parent == [0, 0, 1, 2, 3, 4, 2, 0, 7, 0]
    assert tree.anchors == [0, 7, 9]
    step = np.arange(10.0)  # each atom's vector to its parent
    step[0] = 0.0
    total = step.copy()
    for ancestors in tree.jumps:
        total = total + total[np.array(ancestors)]
    assert total.tolist() == [0, 1, 3, 6, 10, 15, 9, 7, 15, 9]
    assert len(tree.jumps) == 3  # depth 5: three doublings
    with pytest.raises(ValueError, match=r"bond \(3, 12\) does not join two different atoms of the 10-atom"):
        region_tree(10, [(3, 12)])


def test_checked_against_the_model_once():
    with pytest.raises(ValueError, match=r"elements N \(7\) are not covered .* trained on H \(1\), C \(6\), O \(8\)"):
        ForceSpec.of([7, 1, 1]).for_model(model())
    spec = ForceSpec.of([8, 1, 1])
    assert spec.for_model(model()) is spec  # nothing to size: the same value
    with pytest.raises(ValueError, match="compile=True with a periodic ML system needs box_vectors"):
        ForceSpec.of([8, 1, 1], periodic=True).for_model(model(), True, "compile=True")


def test_static_shapes_size_the_capacity_from_the_density():
    side = 1.2
    sized = ForceSpec.of([8, 1, 1] * 10, periodic=True, box_vectors=np.eye(3) * side).for_model(model(), True)
    assert sized.neighbor_capacity == estimate_neighbor_capacity(30, 0.4, side**3)
    molecule = ForceSpec.of([8, 1, 1]).for_model(model(), True)
    assert molecule.neighbor_capacity == 6  # every ordered pair of 3 atoms: fewer than the density estimate
    given = ForceSpec.of([8, 1, 1], neighbor_capacity=4).for_model(model(), True)
    assert given.neighbor_capacity == 4


def test_box_volume_of_a_triclinic_box():
    box = [[2.0, 0.0, 0.0], [0.5, 1.8, 0.0], [0.3, 0.4, 1.7]]
    assert box_volume_nm3(box) == pytest.approx(abs(np.linalg.det(np.array(box))))

