# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Start the tipsv2_perception node (and optionally RViz).

ros2 launch tipsv2_ros perception.launch.py image:=/camera/color/image_raw \
    camera_info:=/camera/color/camera_info namespace:=tipsv2 backend:=tensorrt
ros2 launch tipsv2_ros perception.launch.py namespace:='' use_sim_time:=true \
    log_level:=debug rviz:=true fixed_frame:=camera_color_optical_frame
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from tipsv2_ros.ros import launch_args

ARGUMENTS = {
    'image': ('/camera/color/image_raw', 'Input image topic (image_transport compressed: '
              'the base topic, without /compressed)'),
    'camera_info': ('/camera/color/camera_info', 'Input sensor_msgs/CameraInfo topic'),
    'namespace': ('tipsv2', "Namespace of the node and its outputs; '' or / is the root"),
    'params_file': ('', 'Parameter file (default: the installed config/perception.yaml)'),
    'backend': ('auto', 'auto, tensorrt, onnxruntime, torch or triton'),
    'image_transport': ('', 'raw or compressed (empty: as the parameter file says)'),
    'autostart': ('', 'true: configure and activate at start-up; false: wait for a '
                  'lifecycle manager (empty: as the parameter file says, default true)'),
    'use_sim_time': ('false', 'Use the /clock topic (bags, simulators)'),
    'log_level': ('info', 'debug, info, warn, error or fatal'),
    'rviz': ('false', 'Also start RViz with config/perception.rviz (publishes depth/points)'),
    'fixed_frame': ('camera_color_optical_frame', "RViz's fixed frame: your camera's frame_id "
                    '(the header.frame_id of its images, which every output copies)'),
}


def _nodes(context):
    args = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    share = get_package_share_directory('tipsv2_ros')
    params_file = args['params_file'] or os.path.join(share, 'config', 'perception.yaml')
    nodes = [Node(
        package='tipsv2_ros',
        executable='perception_node',
        name='tipsv2_perception',
        namespace=launch_args.namespace(args['namespace']),
        parameters=[params_file, launch_args.parameter_overrides(args)],
        remappings=[('image', args['image']), ('camera_info', args['camera_info'])],
        arguments=launch_args.ros_arguments(args),
        output='screen',
        emulate_tty=True,
    )]
    if launch_args.flag('rviz', args['rviz']):
        nodes.append(Node(
            package='rviz2', executable='rviz2', name='rviz2', output='screen',
            arguments=['-d', os.path.join(share, 'config', 'perception.rviz'),
                       '-f', args['fixed_frame']],
            parameters=[{'use_sim_time': launch_args.flag('use_sim_time',
                                                          args['use_sim_time'])}]))
    return nodes


def generate_launch_description():
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=description)
          for name, (default, description) in ARGUMENTS.items()),
        OpaqueFunction(function=_nodes),
    ])
