# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Start the tipsv2_perception node.

ros2 launch tipsv2_ros perception.launch.py image:=/camera/color/image_raw \
    camera_info:=/camera/color/camera_info namespace:=tipsv2 backend:=tensorrt
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory('tipsv2_ros'), 'config',
                                  'perception.yaml')
    arguments = [
        DeclareLaunchArgument('image', default_value='/camera/color/image_raw',
                              description='Input sensor_msgs/Image topic'),
        DeclareLaunchArgument('camera_info', default_value='/camera/color/camera_info',
                              description='Input sensor_msgs/CameraInfo topic'),
        DeclareLaunchArgument('namespace', default_value='tipsv2',
                              description='Namespace of the node and its outputs'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='Parameter file (see config/perception.yaml)'),
        DeclareLaunchArgument('backend', default_value='auto',
                              description='auto, tensorrt, onnxruntime, torch or triton'),
    ]
    node = Node(
        package='tipsv2_ros',
        executable='perception_node',
        name='tipsv2_perception',
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('params_file'),
                    {'backend': LaunchConfiguration('backend')}],
        remappings=[('image', LaunchConfiguration('image')),
                    ('camera_info', LaunchConfiguration('camera_info'))],
        output='screen',
        emulate_tty=True,
    )
    return LaunchDescription([*arguments, node])
