# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""runtime.frame.processing: model input, dense resizing, colour views, intrinsics, points."""
import numpy as np
from PIL import Image
import pytest
import torch
import torch.nn.functional as F

from tipsv2_ros.runtime.frame import colour, processing


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _views(rgb):
    """Return ``rgb`` in each of the layouts image_to_rgb hands out."""
    h, w, _ = rgb.shape
    padded = np.zeros((h, w * 3 + 5), np.uint8)
    padded[:, :w * 3] = rgb.reshape(h, -1)
    rgba = np.dstack([rgb, np.full((h, w), 7, np.uint8)])
    return {
        'contiguous': rgb,
        'bgr (negative stride)': np.ascontiguousarray(rgb[..., ::-1])[..., ::-1],
        'rgba slice': rgba[..., :3],
        'bgra slice': np.ascontiguousarray(rgba[..., [2, 1, 0, 3]])[..., 2::-1],
        'padded rows': padded[:, :w * 3].reshape(h, w, 3),
        'flipped rows': np.ascontiguousarray(rgb[::-1])[::-1],
    }


@pytest.mark.parametrize('shape', [(1, 1), (3, 5), (479, 641)])
def test_identity_size_is_exactly_div_255(shape):
    rgb = _rgb(*shape)
    x = processing.to_pixel_values(rgb, shape)
    assert x.shape == (1, 3, *shape) and x.dtype == torch.float32 and x.is_contiguous()
    expected = torch.from_numpy(rgb.astype(np.float32) / np.float32(255)).permute(2, 0, 1)
    assert torch.equal(x[0], expected)


@pytest.mark.parametrize('src, dst', [((479, 641), (448, 448)), ((60, 100), (448, 448)),
                                      ((3, 5), (448, 448)), ((641, 479), (224, 336))])
def test_matches_pil_antialiased_bilinear(src, dst):
    rgb = _rgb(*src, seed=1)
    ref = np.asarray(Image.fromarray(rgb).resize(dst[::-1], Image.BILINEAR), np.float32) / 255
    got = processing.to_pixel_values(rgb, dst)[0].permute(1, 2, 0).numpy()
    err = np.abs(got - ref)
    # PIL rounds its result to uint8: up to half a level, plus its fixed-point weights.
    assert err.max() <= 1.0 / 255 + 1e-6
    assert err.mean() < 0.35 / 255


@pytest.mark.parametrize('name', list(_views(_rgb(2, 2))))
@pytest.mark.parametrize('size', [(7, 11), (448, 448)])
def test_views_give_the_contiguous_result(name, size):
    rgb = _rgb(13, 17, seed=2)
    view = _views(rgb)[name]
    assert np.array_equal(view, rgb)
    assert torch.equal(processing.to_pixel_values(view, size),
                       processing.to_pixel_values(rgb, size))


def test_grey_broadcast_view():
    grey = _rgb(9, 6)[..., 0]
    view = np.lib.stride_tricks.as_strided(grey, (9, 6, 3), grey.strides + (0,))
    x = processing.to_pixel_values(view, (20, 10))
    assert x.is_contiguous()
    assert torch.equal(x, processing.to_pixel_values(np.ascontiguousarray(view), (20, 10)))


def test_batch_of_different_sizes():
    frames = [_rgb(30, 40), _rgb(5, 3, seed=3)[..., ::-1], _rgb(448, 448, seed=4)]
    batch = processing.to_pixel_values_batch(frames, (28, 42))
    assert batch.shape == (3, 3, 28, 42) and batch.is_contiguous()
    for i, frame in enumerate(frames):
        assert torch.equal(batch[i:i + 1], processing.to_pixel_values(frame, (28, 42)))
    with pytest.raises(ValueError, match='at least one frame'):
        processing.to_pixel_values_batch([], (28, 42))


@pytest.mark.parametrize('frame, size, match', [
    (np.zeros((4, 4, 3), np.float32), (8, 8), 'uint8'),
    (np.zeros((4, 4), np.uint8), (8, 8), r'\(H, W, 3\)'),
    (np.zeros((4, 4, 4), np.uint8), (8, 8), r'\(H, W, 3\)'),
    (np.zeros((0, 4, 3), np.uint8), (8, 8), 'empty'),
    (np.zeros((4, 4, 3), np.uint8), (0, 8), 'positive'),
])
def test_to_pixel_values_errors(frame, size, match):
    with pytest.raises(ValueError, match=match):
        processing.to_pixel_values(frame, size)


def test_resize_rgb():
    rgb = _rgb(30, 50)
    same = processing.resize_rgb(rgb[..., ::-1], (30, 50))
    assert np.array_equal(same, rgb[..., ::-1]) and same.flags.c_contiguous
    for size in [(15, 25), (41, 77)]:
        small = processing.resize_rgb(rgb[..., ::-1], size)
        assert small.shape == size + (3,) and small.dtype == np.uint8 and small.flags.c_contiguous
        ref = np.asarray(Image.fromarray(rgb[..., ::-1]).resize(size[::-1], Image.BILINEAR))
        assert np.abs(small.astype(int) - ref).max() <= 1
    with pytest.raises(ValueError, match='uint8'):
        processing.resize_rgb(rgb.astype(np.float32), (15, 25))


def test_output_size():
    assert processing.output_size('model', (448, 448), (480, 640)) == (256, 256)
    assert processing.output_size('model', (448, 644), (480, 640)) == (256, 368)
    # odd patch grids round up: 7x9 patches -> 64x80 (what the decoder really returns)
    assert processing.output_size('model', (98, 126), (480, 640)) == (64, 80)
    assert processing.output_size('input', (448, 448), (480, 640)) == (480, 640)
    with pytest.raises(ValueError, match="'camera'"):
        processing.output_size('camera', (448, 448), (480, 640))


def test_slide_frame_resize_is_bicubic_and_clamped():
    frame = np.zeros((40, 60, 3), np.uint8)
    frame[:, 30:] = 255  # a hard edge: cubic weights overshoot it
    bicubic = processing.to_pixel_values(frame, (28, 42), mode='bicubic')
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    expected = F.interpolate(x, (28, 42), mode='bicubic', antialias=True,
                             align_corners=False).clamp(0, 255) / 255
    torch.testing.assert_close(bicubic, expected)
    assert float(bicubic.min()) == 0.0 and float(bicubic.max()) == 1.0
    with pytest.raises(ValueError, match="unknown resize mode 'area'"):
        processing.to_pixel_values(frame, (28, 42), mode='area')


def test_resize_dense_bilinear_and_normals():
    depth = torch.full((1, 1, 8, 8), 2.5)
    assert torch.allclose(processing.resize_dense(depth, (37, 21), 'bilinear'), depth.new_full(
        (1, 1, 37, 21), 2.5))
    assert processing.resize_dense(depth, (3, 3), 'bilinear').shape == (1, 1, 3, 3)
    normals = F.normalize(torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)),
                          dim=1)
    out = processing.resize_dense(normals, (45, 61), 'normals')
    assert out.shape == (2, 3, 45, 61)
    assert torch.allclose(out.norm(dim=1), torch.ones(2, 45, 61), atol=1e-5)
    # The official decoder notebook: bicubic upsampling, then re-normalisation.
    official = F.normalize(F.interpolate(normals, (45, 61), mode='bicubic',
                                         align_corners=False), dim=1)
    torch.testing.assert_close(out, official, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="'bicubic'"):
        processing.resize_dense(depth, (4, 4), 'bicubic')


@pytest.mark.parametrize('dtype', [torch.uint8, torch.int64, torch.float32])
def test_resize_dense_nearest(dtype):
    labels = torch.randint(0, 255, (1, 1, 32, 24), generator=torch.Generator().manual_seed(0))
    labels = labels.to(dtype)
    up = processing.resize_dense(labels, (128, 96), 'nearest')
    assert up.dtype == dtype
    assert torch.equal(up, labels.repeat_interleave(4, 2).repeat_interleave(4, 3))
    odd = processing.resize_dense(labels, (45, 77), 'nearest')
    ref = F.interpolate(labels.float(), (45, 77), mode='nearest-exact').to(dtype)
    assert torch.equal(odd, ref)
    assert processing.resize_dense(labels, (32, 24), 'nearest') is labels


def test_colorize_depth():
    lut = colour._turbo_lut()
    depth = np.array([[1.0, 3.0, np.nan], [2.0, np.inf, -np.inf]], np.float32)
    rgb = colour.colorize_depth(depth)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[0, 0], lut[255]) and np.array_equal(rgb[0, 1], lut[0])
    assert np.array_equal(rgb[1, 0], lut[128])
    assert not rgb[0, 2].any() and not rgb[1, 1:].any()  # invalid is black
    assert lut[255].tolist() == [122, 4, 3] and lut[0].tolist() == [48, 18, 59]  # Turbo's ends
    assert lut[135].tolist() == [183, 247, 53]  # one of its key colours
    clipped = colour.colorize_depth(np.array([[0.0, 5.0, 10.0]]), 2.0, 6.0)
    assert np.array_equal(clipped[0], lut[[255, 64, 0]])
    assert not colour.colorize_depth(np.full((2, 2), np.nan)).any()
    assert np.array_equal(colour.colorize_depth(np.ones((2, 2))),
                          np.broadcast_to(lut[0], (2, 2, 3)))


def test_normals_to_rgb():
    normals = np.array([[[-1, -1, -1], [1, 1, 1], [0, 0, 1], [np.nan, 0, 0]]], np.float32)
    rgb = colour.normals_to_rgb(normals)
    assert rgb.dtype == np.uint8
    assert rgb.tolist() == [[[0, 0, 0], [255, 255, 255], [128, 128, 255], [0, 128, 128]]]


def test_overlay_labels():
    image = _rgb(4, 5)
    labels = np.full((4, 5), 255, np.uint8)
    labels[1, 1], labels[2, 3], labels[3, 4] = 0, 1, 3  # 3 wraps to palette[1]
    palette = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    assert np.array_equal(colour.overlay_labels(image, labels, palette, 0.0), image)
    full = colour.overlay_labels(image, labels, palette, 1.0)
    assert full[1, 1].tolist() == [255, 0, 0] and full[2, 3].tolist() == [0, 0, 255]
    assert full[3, 4].tolist() == [0, 0, 255]
    half = colour.overlay_labels(image, labels, palette).astype(int)
    assert np.abs(half[1, 1] - (image[1, 1] + np.array([255, 0, 0])) / 2).max() <= 0.5
    unlabelled = labels == 255
    assert np.array_equal(half[unlabelled], image[unlabelled])
    with pytest.raises(ValueError, match='must be'):
        colour.overlay_labels(image, labels[:3], palette)
    with pytest.raises(ValueError, match='alpha'):
        colour.overlay_labels(image, labels, palette, 1.5)


def test_label_palette():
    palette = colour.label_palette(255)
    assert palette.shape == (255, 3) and palette.dtype == np.uint8
    assert len({tuple(c) for c in palette}) == 255
    assert np.array_equal(colour.label_palette(10), palette[:10])  # stable as labels grow
    assert colour.label_palette(0).shape == (0, 3)


K = np.array([[500.0, 0.0, 319.5], [0.0, 450.0, 239.5], [0.0, 0.0, 1.0]])
P = np.array([[500.0, 0.0, 319.5, -25.0], [0.0, 450.0, 239.5, 0.0], [0.0, 0.0, 1.0, 0.0]])


def test_scale_camera_info_values():
    k, p = processing.scale_camera_info(K, P, (480, 640), (240, 320))
    assert k[0, 0] == 250 and k[1, 1] == 225
    # The centre of a 640x480 image, 319.5, is the centre of a 320x240 one, 159.5.
    assert k[0, 2] == 159.5 and k[1, 2] == 119.5
    assert np.array_equal(p[:, :3], k) and p[0, 3] == -12.5
    same_k, same_p = processing.scale_camera_info(K, P, (480, 640), (480, 640))
    assert np.array_equal(same_k, K) and np.array_equal(same_p, P)


def test_scale_camera_info_pixel_round_trip():
    src, dst = (480, 640), (256, 448)  # anisotropic: sy = 0.533, sx = 0.7
    k, _ = processing.scale_camera_info(K, P, src, dst)
    point = np.array([0.3, -0.2, 2.0])
    u, v, _ = K @ point / point[2]
    # Where the pixel centre (u, v) lands after the squash resize (pixel edges scale).
    expected = ((u + 0.5) * dst[1] / src[1] - 0.5, (v + 0.5) * dst[0] / src[0] - 0.5)
    assert np.allclose((k @ point / point[2])[:2], expected)


def test_depth_to_points():
    k = np.array([[500.0, 0.0, 2.0], [0.0, 400.0, 1.0], [0.0, 0.0, 1.0]])
    depth = np.full((4, 6), 2.0, np.float32)
    depth[0, :4] = [0.0, -1.0, np.nan, np.inf]
    points = processing.depth_to_points(depth, k)
    assert points.shape == (4, 6, 3) and points.dtype == np.float32
    # Pixel (u=4, v=3) at 2 m: x = (4 - 2) / 500 * 2, y = (3 - 1) / 400 * 2.
    assert np.allclose(points[3, 4], [0.008, 0.01, 2.0])
    assert np.isnan(points[0, :4]).all() and not np.isnan(points[1:]).any()
    uvw = points[1:].reshape(-1, 3) @ k.T
    grid_v, grid_u = np.mgrid[1:4, 0:6]
    assert np.allclose(uvw[:, :2] / uvw[:, 2:], np.stack([grid_u, grid_v], -1).reshape(-1, 2),
                       atol=1e-5)
    with pytest.raises(ValueError, match='focal'):
        processing.depth_to_points(depth, np.zeros((3, 3)))
