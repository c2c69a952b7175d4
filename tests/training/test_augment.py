import torch

from training.augment import augment_batch


def batch(n=16, c=1, h=12, w=12):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(0))


def test_no_augmentation_is_the_identity():
    x = batch()
    assert augment_batch(x, torch.Generator().manual_seed(1)) is x


def test_crop_shift_copies_pixels_by_an_integer_offset_with_zero_fill():
    x = batch(n=32) + 0.01  # strictly positive, so zero fill is recognisable
    out = augment_batch(x, torch.Generator().manual_seed(1), crop_pad_px=2)
    shifts = set()
    for i in range(len(x)):
        match = None
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = torch.zeros_like(x[i])
                ys, yd = (slice(dy, None), slice(None, -dy or None)) if dy >= 0 else (slice(None, dy), slice(-dy, None))
                xs, xd = (slice(dx, None), slice(None, -dx or None)) if dx >= 0 else (slice(None, dx), slice(-dx, None))
                shifted[:, yd, xd] = x[i][:, ys, xs]
                if torch.allclose(out[i], shifted, atol=1e-6):
                    match = (dy, dx)
        assert match is not None, f"image {i} is not an integer shift"
        shifts.add(match)
    assert len(shifts) > 3  # the shift is random per image


def test_hflip_flips_about_half_the_batch():
    x = batch(n=200)
    out = augment_batch(x, torch.Generator().manual_seed(2), hflip=True)
    flipped = sum(torch.allclose(o, i.flip(-1), atol=1e-6) for o, i in zip(out, x))
    same = sum(torch.allclose(o, i, atol=1e-6) for o, i in zip(out, x))
    assert flipped + same == 200 and 60 < flipped < 140


def test_rotation_keeps_shape_range_and_is_seeded():
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    a = augment_batch(x, torch.Generator().manual_seed(3), rotation_deg=15)
    b = augment_batch(x, torch.Generator().manual_seed(3), rotation_deg=15)
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 + 1e-6
    assert a[:, :, :3, :].abs().max() == 0  # background stays 0
    assert not torch.allclose(a[0], a[1])  # different angles per image
    assert (a.sum(dim=(1, 2, 3)) - 64).abs().max() < 6  # content is moved, not lost


def test_scale_zooms_about_the_centre():
    x = torch.zeros(64, 1, 21, 21)
    x[:, :, 8:13, 8:13] = 1.0  # a 5x5 square in the middle
    out = augment_batch(x, torch.Generator().manual_seed(0), scale_frac=0.5)
    mass = out.sum(dim=(1, 2, 3))
    assert mass.min() < 25 * 0.8 and mass.max() > 25 * 1.2  # some shrink, some grow
    assert torch.allclose(out[:, :, 10, 10], torch.ones(64))  # the centre stays put
