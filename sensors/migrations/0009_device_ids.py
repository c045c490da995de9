"""Sensors are devices, not only MACs: `mac` becomes `device_id` (a MAC stays a MAC), with a source.

Every existing sensor is a TCP board: its id keeps the MAC it had, so every row, URL and
export name stays what it was; `source` is "tcp" for all of them.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("sensors", "0008_live_readings")]

    operations = [
        migrations.RenameField("sensor", "mac", "device_id"),
        migrations.AlterField(
            "sensor", "device_id", models.CharField("device id", max_length=72, unique=True)
        ),
        migrations.AddField(
            "sensor",
            "source",
            models.CharField(
                choices=[
                    ("tcp", "TCP board"),
                    ("tasmota", "Tasmota"),
                    ("esphome", "ESPHome"),
                    ("shelly", "Shelly"),
                    ("mqtt", "MQTT (generic JSON)"),
                ],
                default="tcp",
                editable=False,
                max_length=10,
            ),
        ),
        migrations.AddField(
            "sensor",
            "offline_since",
            models.DateTimeField("offline (as the device reported) since", null=True, blank=True),
        ),
        migrations.AlterModelOptions("sensor", {"ordering": ["name", "device_id"]}),
        migrations.RenameField("refusedsensor", "mac", "device_id"),
        migrations.AlterField(
            "refusedsensor", "device_id", models.CharField("device id", max_length=72, unique=True)
        ),
    ]
