"""A shop's own catalog, shaped unlike the bundled ``shop`` app: other model names, other field names, no
brand, no currency, no image status. The plugin apps are pointed at it by settings only (see settings.py)."""

from django.db import models


class Seller(models.Model):
    name = models.CharField(max_length=100)
    website = models.URLField(blank=True)

    def __str__(self) -> str:
        return self.name


class Department(models.Model):
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name


class Item(models.Model):
    seller = models.ForeignKey(Seller, null=True, on_delete=models.CASCADE)
    sku = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=200)
    price_incl_tax = models.DecimalField(max_digits=10, decimal_places=2)
    is_available = models.BooleanField(default=True)
    department = models.ForeignKey(Department, null=True, on_delete=models.SET_NULL)

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return f"/items/{self.pk}/"


class ItemPhoto(models.Model):
    item = models.ForeignKey(Item, related_name="photos", on_delete=models.CASCADE)
    original = models.ImageField(upload_to="items")
    display_order = models.PositiveIntegerField(default=0)
