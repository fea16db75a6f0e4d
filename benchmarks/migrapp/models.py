"""A small shop, as its 20 migrations leave it: FKs, an M2M, indexes and constraints."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils import timezone


class Customer(models.Model):
    full_name = models.CharField(max_length=200)
    email = models.EmailField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)


class Category(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(unique=True)


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)


class Product(models.Model):
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    sku = models.CharField(max_length=32, unique=True)
    category = models.ForeignKey(
        Category, models.PROTECT, null=True, blank=True, related_name="products"
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="products")


class Order(models.Model):
    STATUSES = [("new", "New"), ("paid", "Paid"), ("shipped", "Shipped"), ("void", "Void")]

    customer = models.ForeignKey(Customer, models.CASCADE, related_name="orders")
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=20, choices=STATUSES, default="new")
    total = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))

    class Meta:
        indexes = [models.Index(fields=["status", "-created_at"], name="order_status_created_idx")]


class OrderLine(models.Model):
    order = models.ForeignKey(Order, models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order", "product"], name="orderline_unique_product"),
            models.CheckConstraint(
                condition=models.Q(quantity__gt=0), name="orderline_quantity_positive"
            ),
        ]


class Invoice(models.Model):
    order = models.OneToOneField(Order, models.CASCADE, related_name="invoice")
    number = models.CharField(max_length=20, unique=True)
    issued_on = models.DateField()
    paid = models.BooleanField(default=False)
