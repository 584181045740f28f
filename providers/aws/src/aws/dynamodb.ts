/**
 * The DynamoDB operations the runtime uses (GetItem, PutItem, UpdateItem, DeleteItem, Query), over DynamoDB's
 * JSON protocol: `POST /` with `X-Amz-Target: DynamoDB_20120810.<Operation>` and a JSON body, in
 * the shapes of DynamoDB's API reference, signed for service `dynamodb`: what the runtime needs of
 * the AWS SDK's client, which it does not ship (why, measured: providers/aws/README.md). The same
 * requests as the SDK's for the same input: test/sdk-equivalence.test.ts. Failures are AwsError named by the answer's `__type` (`ResourceNotFoundException`, ...).
 */
import { callJson, type JsonProtocol, type RetryPolicy, STANDARD_RETRY } from "./request.js";

/** DynamoDB's JSON 1.0 protocol. */
const DYNAMODB: JsonProtocol = {
  service: "dynamodb",
  endpointId: "DYNAMODB",
  prefix: "dynamodb",
  contentType: "application/x-amz-json-1.0",
  targetPrefix: "DynamoDB_20120810",
};

/** An attribute value as DynamoDB's JSON has it (numbers as strings, binary as base64). */
export interface AttributeValue {
  S?: string;
  N?: string;
  B?: string;
  SS?: string[];
  NS?: string[];
  BS?: string[];
  M?: Record<string, AttributeValue>;
  L?: AttributeValue[];
  NULL?: boolean;
  BOOL?: boolean;
}

/** An item, or a key. */
export type Item = Record<string, AttributeValue>;

interface Expressions {
  ExpressionAttributeNames?: Record<string, string>;
  ExpressionAttributeValues?: Item;
}

export interface GetItemInput {
  TableName: string;
  Key: Item;
  ConsistentRead?: boolean;
  ProjectionExpression?: string;
  ExpressionAttributeNames?: Record<string, string>;
}

export interface PutItemInput extends Expressions {
  TableName: string;
  Item: Item;
  ConditionExpression?: string;
}

export interface DeleteItemInput extends Expressions {
  TableName: string;
  Key: Item;
  ConditionExpression?: string;
  ReturnValues?: "NONE" | "ALL_OLD";
}

export interface UpdateItemInput extends Expressions {
  TableName: string;
  Key: Item;
  UpdateExpression: string;
  ConditionExpression?: string;
  ReturnValues?: "NONE" | "ALL_OLD" | "UPDATED_OLD" | "ALL_NEW" | "UPDATED_NEW";
}

export interface QueryInput extends Expressions {
  TableName: string;
  KeyConditionExpression: string;
  FilterExpression?: string;
  ProjectionExpression?: string;
  ConsistentRead?: boolean;
  ExclusiveStartKey?: Item;
  Limit?: number;
  ScanIndexForward?: boolean;
}

export interface QueryOutput {
  Items?: Item[];
  LastEvaluatedKey?: Item;
}

/** What the kv stores and the connections table need of DynamoDB. */
export interface DynamoDb {
  getItem(input: GetItemInput): Promise<{ Item?: Item }>;
  putItem(input: PutItemInput): Promise<void>;
  deleteItem(input: DeleteItemInput): Promise<unknown>;
  query(input: QueryInput): Promise<QueryOutput>;
}

/** What the connections table needs beyond the kv stores: updates, and the item a delete removed. */
export interface ConnectionsDynamoDb extends DynamoDb {
  updateItem(input: UpdateItemInput): Promise<{ Attributes?: Item }>;
  deleteItem(input: DeleteItemInput): Promise<{ Attributes?: Item }>;
}

/** DynamoDB through its JSON protocol, configured from the environment. */
export class DynamoDbClient implements ConnectionsDynamoDb {
  constructor(
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly retry: RetryPolicy = STANDARD_RETRY,
  ) {}

  private call<T>(operation: string, input: object): Promise<T> {
    return callJson<T>(this.env, DYNAMODB, operation, input, this.retry);
  }

  getItem(input: GetItemInput): Promise<{ Item?: Item }> {
    return this.call("GetItem", input);
  }

  async putItem(input: PutItemInput): Promise<void> {
    await this.call("PutItem", input);
  }

  deleteItem(input: DeleteItemInput): Promise<{ Attributes?: Item }> {
    return this.call("DeleteItem", input);
  }

  updateItem(input: UpdateItemInput): Promise<{ Attributes?: Item }> {
    return this.call("UpdateItem", input);
  }

  query(input: QueryInput): Promise<QueryOutput> {
    return this.call("Query", input);
  }
}
